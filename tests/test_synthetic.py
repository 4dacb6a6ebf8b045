from collections import Counter

import numpy as np
import pytest

from grounding.data.synthetic import World


def test_batches_are_a_pure_function_of_seed_and_step():
    world = World()
    a, b = world.batch(3, 17, 8), world.batch(3, 17, 8)
    assert [s.caption() for s in a] == [s.caption() for s in b]
    assert a[0].render(32).tobytes() == b[0].render(32).tobytes()
    assert [s.caption() for s in world.batch(3, 18, 8)] != [s.caption() for s in a]


def test_held_out_pairs_never_appear_in_training():
    world = World()
    held = set(world.held_out)
    scenes = [s for step in range(50) for s in world.batch(0, step, 32, split="train")]
    assert not any((o.colour, o.shape) in held for s in scenes for o in s.objects)
    every_colour = {o.colour for s in scenes for o in s.objects}
    every_shape = {o.shape for s in scenes for o in s.objects}
    assert every_colour == set(world.colours) and every_shape == set(world.shapes)
    held_scenes = world.batch(0, 0, 32, split="held_out")
    assert all(any((o.colour, o.shape) in held for o in s.objects) for s in held_scenes)


def test_scenes_render_at_any_resolution():
    scene = World().sample(np.random.default_rng(0))
    for size in (16, 64, 224):
        assert scene.render(size).size == (size, size)


def test_captions_name_every_object_and_two_object_captions_state_a_relation():
    world, rng = World(), np.random.default_rng(1)
    for _ in range(100):
        scene = world.sample(rng, "any")
        caption = scene.caption()
        for obj in scene.objects:
            assert obj.colour in caption and obj.shape in caption
        if len(scene.objects) == 2:
            assert any(r in caption for r in ("left of", "right of", "above", "below"))


def test_hard_negatives_use_the_same_words_in_a_wrong_arrangement():
    world, rng = World(), np.random.default_rng(2)
    seen = 0
    for _ in range(100):
        scene = world.sample(rng, "any", n_objects=2)
        truth = scene.caption()
        for negative in scene.hard_negatives():
            seen += 1
            assert negative != truth
            same_bag = Counter(negative.split()) == Counter(truth.split())
            relation_flip = any(r in negative for r in ("left of", "right of", "above", "below"))
            assert same_bag or relation_flip
    assert seen > 100


def test_question_answers_agree_with_the_scene():
    world, rng = World(), np.random.default_rng(3)
    types = Counter()
    for _ in range(200):
        scene = world.sample(rng, "any")
        for question, answer, kind in scene.questions():
            types[kind] += 1
            if question == "how many objects are there?":
                assert answer == ["zero", "one", "two", "three", "four"][len(scene.objects)]
            if question.startswith("is there a "):
                colour, shape = question[len("is there a "):-1].split()
                present = any(o.colour == colour and o.shape == shape for o in scene.objects)
                assert answer == ("yes" if present else "no")
            if question.startswith("what colour is the "):
                shape = question[len("what colour is the "):-1]
                assert [o.colour for o in scene.objects if o.shape == shape] == [answer]
            if kind == "relation":  # "is the red circle left of the blue square?"
                words = question[len("is the "):-1].split()
                a = [o for o in scene.objects if (o.colour, o.shape) == tuple(words[:2])]
                b = [o for o in scene.objects if (o.colour, o.shape) == tuple(words[-2:])]
                assert len(a) == len(b) == 1, "a relation question names each object uniquely"
                dx, dy = a[0].x - b[0].x, a[0].y - b[0].y
                truth = ("left of" if dx < 0 else "right of") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")
                assert answer == ("yes" if " ".join(words[2:-3]) == truth else "no")
    assert set(types) == {"count", "colour", "shape", "relation", "existence"}


def test_labelled_set_covers_every_label_evenly():
    world = World()
    scenes, targets = world.labelled(0, 3)
    assert Counter(targets) == {i: 3 for i in range(len(world.labels))}
    for scene, t in zip(scenes, targets):
        assert f"{scene.objects[0].colour} {scene.objects[0].shape}" == world.labels[t]


def test_unknown_held_out_pair_is_refused():
    with pytest.raises(ValueError, match="not in this world"):
        World(held_out=(("teal", "circle"),))


def test_near_misses_change_one_thing():
    world, rng = World(), np.random.default_rng(4)
    for _ in range(100):
        scene = world.sample(rng, "any")
        miss = scene.near_miss(rng)
        assert miss != scene.caption()
        assert len(miss.split()) == len(scene.caption().split())
