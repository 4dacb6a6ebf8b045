import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from grounding.config import OPENAI_MEAN, OPENAI_STD
from grounding.data.images import BadImageError, ImageRef, Preprocess, TrainTransform, load_batch, load_image
from grounding.data.synthetic import World


def write_png(path, size=(40, 30)):
    Image.new("RGB", size, (10, 200, 30)).save(path)
    return path


def test_bad_images_get_an_error_naming_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    good = write_png(tmp_path / "good.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    for path, reason in [(empty, "empty"), (text, "not an image"), (truncated, "truncated"),
                         (tmp_path / "missing.png", "no such file")]:
        with pytest.raises(BadImageError, match=reason) as info:
            load_image(path)
        assert str(path) in str(info.value)


def test_decompression_bombs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)  # 100 Mpixel, a few kB on disk
    with pytest.raises(BadImageError, match="bomb"):
        load_image(bomb)


def test_preprocess_resizes_the_short_side_and_centre_crops(tmp_path):
    # a wide image whose left and right thirds are red and the middle blue: the crop keeps blue
    array = np.zeros((60, 180, 3), np.uint8)
    array[:, :60] = (255, 0, 0)
    array[:, 60:120] = (0, 0, 255)
    array[:, 120:] = (255, 0, 0)
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    pre = Preprocess(32, OPENAI_MEAN, OPENAI_STD)
    x = pre(path)
    assert x.shape == (3, 32, 32)
    blue = (1.0 - OPENAI_MEAN[2]) / OPENAI_STD[2]
    assert torch.allclose(x[2, 8:24, 8:24], torch.full((16, 16), blue), atol=1e-4)


def test_preprocess_accepts_grayscale_and_alpha():
    pre = Preprocess(16, OPENAI_MEAN, OPENAI_STD)
    for mode in ("L", "RGBA", "P"):
        assert pre(Image.new(mode, (20, 20))).shape == (3, 16, 16)


def test_train_transform_is_seeded():
    t = TrainTransform(32, OPENAI_MEAN, OPENAI_STD, scale=(0.5, 1.0))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    a = t(image, np.random.default_rng(5))
    assert torch.equal(a, t(image, np.random.default_rng(5)))
    assert not torch.equal(a, t(image, np.random.default_rng(6)))
    assert a.shape == (3, 32, 32)


def test_bad_images_can_be_skipped_and_counted(tmp_path):
    good = [write_png(tmp_path / f"ok{i}.png") for i in range(2)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    pre = Preprocess(16, OPENAI_MEAN, OPENAI_STD)
    with pytest.raises(BadImageError, match="bad.png"):
        load_batch([good[0], bad, good[1]], pre)
    pixels, kept, skipped = load_batch([good[0], bad, good[1]], pre, skip_bad=True)
    assert pixels.shape == (2, 3, 16, 16) and kept == good
    assert len(skipped) == 1 and "bad.png" in skipped[0]


def test_one_image_reference_reads_every_kind_of_image_the_same(tmp_path):
    """A file, a tar member (read by offset, and again from its stored key), bytes and pixels in
    memory all give the same image; a scene renders at the size asked for."""
    path = write_png(tmp_path / "a.png")
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(path, "000001.png")
    with tarfile.open(shard) as tar:
        info = tar.getmember("000001.png")
    member = ImageRef(shard, member="000001.png", offset=info.offset_data, length=info.size)
    refs = [ImageRef(path), member, ImageRef.from_key(member.key), ImageRef(data=path.read_bytes(), name="mem"),
            ImageRef(pixels=np.asarray(Image.open(path)), name="px")]
    assert member.key == f"{shard}:000001.png" and ImageRef.from_key(member.key) == member
    expected = np.asarray(load_image(path))
    for ref in refs:
        assert np.array_equal(np.asarray(ref.read()), expected), ref.key
    scene = World().sample(np.random.default_rng(0))
    assert ImageRef(scene=scene).read(48).size == (48, 48) and ImageRef(scene=scene).key == scene.caption()
    thumb = Image.open(io.BytesIO(ImageRef(path).thumbnail(16)))
    assert thumb.format == "JPEG" and max(thumb.size) == 16


def test_an_image_reference_to_a_lost_member_names_it(tmp_path):
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(write_png(tmp_path / "a.png"), "a.png")
    with pytest.raises(BadImageError, match=r"s.tar:b.png: cannot find b.png in the shard"):
        ImageRef.from_key(f"{shard}:b.png")
    with pytest.raises(BadImageError, match="its shard .* is gone"):
        ImageRef(tmp_path / "gone.tar", member="a.png", offset=512, length=10).read()
