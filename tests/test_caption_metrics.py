import math

import numpy as np
import pytest

from grounding.data.synthetic import World
from grounding.evaluation.caption_metrics import bleu, cider_d, rouge_l


def test_hand_computed_cases():
    refs = {1: ["a red circle"]}
    assert bleu(refs, {1: ["a red circle"]}, 3)[2] == pytest.approx(1.0)
    # unigram precision 2/3 (clipped: 'a' counted once), no brevity penalty
    assert bleu({1: ["a red circle"]}, {1: ["a a circle"]}, 1)[0] == pytest.approx(2 / 3)
    # LCS 2 of 3 and 2 of 4: P = 2/3, R = 1/2
    p, r, b = 2 / 3, 1 / 2, 1.2
    assert rouge_l({1: ["a blue square here"]}, {1: ["a square now"]}) == pytest.approx((1 + b * b) * p * r / (r + b * b * p))
    assert rouge_l({1: ["x y"]}, {1: ["z"]}) == 0.0
    # brevity: candidate 1 word against a 3-word reference
    assert bleu({1: ["a red circle"]}, {1: ["red"]}, 1)[0] == pytest.approx(math.exp(1 - 3), rel=1e-6)


def corpus(seed=0, n=60):
    world, rng = World(), np.random.default_rng(seed)
    refs, hyps = {}, {}
    for i in range(n):
        scene = world.sample(rng, "any")
        refs[i] = [scene.caption(), *scene.hard_negatives()[:1], f"a picture with {len(scene.objects)} shapes"]
        choice = i % 4
        hyps[i] = [scene.caption() if choice == 0 else scene.near_miss(rng) if choice == 1
                   else " ".join(scene.caption().split()[:4]) if choice == 2 else "a small red circle"]
    return refs, hyps


def test_agrees_with_pycocoevalcap_to_1e_6():
    pytest.importorskip("pycocoevalcap", reason="install the test extra: pip install -e '.[test]'")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    for seed in (0, 1):
        refs, hyps = corpus(seed)
        expected_bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
        assert np.allclose(bleu(refs, hyps), expected_bleu, atol=1e-6)
        assert rouge_l(refs, hyps) == pytest.approx(Rouge().compute_score(refs, hyps)[0], abs=1e-6)
        assert cider_d(refs, hyps) == pytest.approx(Cider().compute_score(refs, hyps)[0], abs=1e-6)
