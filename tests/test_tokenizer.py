import html
import random

import ftfy
import pytest

from grounding.tokenizer import Tokenizer, clean

# Strings that ftfy leaves alone, where OpenAI's cleaning and HF's normaliser agree.
TRICKY = [
    "Hello, World!", "a photo of a cat.", "naïve café résumé déjà vu", "🚀 rockets & emoji 😀👍🏽🇧🇪",
    "it's we're they've I'm you'll he'd", "1234567890 3.14159 -42 1e-5 ½", "    lots   of\twhitespace\n\nhere  ",
    "ALL CAPS TEXT", "中文字符 日本語 한국어 العربية", "punctuation!!! ??? ... --- ((())) ;;::", "tab\tand\u00a0nbsp",
    "", " ", "x<y>z /path/to/file.jpg user@example.com", "don't stop-believing", "C++ & C# vs. F#",
    "multi\nline\r\ntext", "Zürich, São Paulo, Kraków", "a" * 80, "supercalifragilisticexpialidocious " * 30,
    "the girl is licking the spoon of batter",
]
# Strings with broken unicode that ftfy repairs, as OpenAI's tokenizer does.
BROKEN = ["mojibake: Ã©tÃ© Ã  la plage", "ﬁ ligature and ＡＢＣ fullwidth", "â€œquotedâ€\x9d"]


@pytest.fixture(scope="module")
def pair(openai_bpe, tmp_path_factory):
    """Our tokenizer on OpenAI's file, and HF's CLIPTokenizer on the same vocabulary."""
    transformers = pytest.importorskip("transformers", reason="install the test extra: pip install -e '.[test]'")
    ours = Tokenizer.from_openai_merges(openai_bpe)
    folder = tmp_path_factory.mktemp("hf")
    ours.save_hf_files(folder)
    hf = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    return ours, hf


def hf_ids(hf, text, length=77):
    ids = hf(text, truncation=True, max_length=length)["input_ids"]
    return ids + [0] * (length - len(ids))


def test_ids_equal_hf_clip_tokenizer(pair):
    ours, hf = pair
    for text in TRICKY:
        assert ours(text, truncate=True)[0].tolist() == hf_ids(hf, text), text


def test_broken_unicode_is_repaired_as_openai_does(pair):
    ours, hf = pair
    for text in BROKEN:
        assert clean(text) != " ".join(text.split()).lower()  # the repair changes something
        assert ours(text)[0].tolist() == hf_ids(hf, ftfy.fix_text(text)), text


def test_known_ids_of_the_openai_vocabulary(pair):
    ours, _ = pair
    assert len(ours) == 49408
    assert ours("a photo of a cat.")[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    assert ours("Tom &amp; Jerry")[0].tolist() == ours("tom & jerry")[0].tolist()  # HTML unescaped


def test_hf_files_round_trip(pair, tmp_path):
    ours, _ = pair
    ours.save_hf_files(tmp_path)
    again = Tokenizer.from_hf_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    for text in TRICKY:
        assert again(text, truncate=True).tolist() == ours(text, truncate=True).tolist()


def test_over_long_text_is_an_error_unless_truncated():
    tok = Tokenizer.train(["a red circle left of a blue square"] * 5, 600, context_length=8)
    with pytest.raises(ValueError, match="over the context length of 8.*truncate=True"):
        tok("a red circle left of a blue square")
    ids = tok("a red circle left of a blue square", truncate=True)[0].tolist()
    assert len(ids) == 8 and ids[0] == tok.sot_token_id and ids[-1] == tok.eot_token_id


def test_trained_tokenizer_round_trips_text(tmp_path):
    corpus = ["a small red circle left of a large blue square", "how many triangles are there?"] * 20
    tok = Tokenizer.train(corpus, 600, context_length=32)
    assert tok.bpe.get_vocab() == Tokenizer.train(corpus, 600, context_length=32).bpe.get_vocab()  # deterministic
    assert tok.pad_token_id == 0 and tok.sot_token_id == 1 and tok.eot_token_id == 2
    ids = tok(corpus[:2])
    # like OpenAI's decoder, every pre-token ends a word, so punctuation comes back spaced
    assert [tok.decode(row) for row in ids] == [corpus[0], "how many triangles are there ?"]
    tok.save(tmp_path / "tokenizer.json")
    assert Tokenizer.from_file(tmp_path / "tokenizer.json", 32)(corpus[:2]).tolist() == ids.tolist()


def test_the_world_vocabulary_is_learned_once_and_a_damaged_copy_learned_again(tmp_path, monkeypatch):
    from grounding.vocabulary import _world_vocabulary

    monkeypatch.setenv("GROUNDING_CACHE", str(tmp_path))
    _world_vocabulary.cache_clear()
    learned = _world_vocabulary(1024, 32)
    (kept,) = (tmp_path / "vocabularies").iterdir()
    assert kept.read_text(encoding="utf-8") == learned
    kept.write_text("{not json")
    _world_vocabulary.cache_clear()
    assert _world_vocabulary(1024, 32) == learned and kept.read_text(encoding="utf-8") == learned
    _world_vocabulary.cache_clear()


def test_clean_skips_ftfy_only_where_it_would_change_nothing():
    def full(text):
        return " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).split()).lower()

    rng = random.Random(0)
    printable = [chr(c) for c in range(32, 127) if chr(c) != "&"]
    samples = ["".join(rng.choice(printable) for _ in range(rng.randrange(1, 40))) for _ in range(2000)]
    for text in TRICKY + BROKEN + samples + ["a &amp; b", "x\x07y", "tab\there"]:
        assert clean(text) == full(text), repr(text)
