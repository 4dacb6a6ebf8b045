import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import grounding
from grounding.formats.huggingface import write_hf_folder

transformers = pytest.importorskip("transformers", reason="install the test extra: pip install -e '.[test]'")


def hf_model(shapes: str, act: str = "quick_gelu"):
    if shapes == "tiny":
        text = dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=77, hidden_act=act, eos_token_id=49407)
        vision = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      image_size=64, patch_size=16, hidden_act=act)
        dim = 32
    else:  # the ViT-B/32 shapes
        text = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                    num_attention_heads=8, max_position_embeddings=77, hidden_act=act, eos_token_id=49407)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32, hidden_act=act)
        dim = 512
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim)
    return transformers.CLIPModel(config).eval()


def skip_without_room(folder: Path, gigabytes: float) -> None:
    """Full-size weights need disk: a nearly full CI machine skips these tests, naming the need, instead of
    failing this test and whatever runs beside it."""
    free = shutil.disk_usage(folder).free / 1e9
    if free < gigabytes:
        pytest.skip(f"needs {gigabytes:g} GB free in {folder}, {free:.1f} GB are: free some disk space")


def features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize("shapes,act", [("tiny", "quick_gelu"), ("tiny", "gelu"),
                                        pytest.param("ViT-B-32", "quick_gelu", marks=pytest.mark.slow)])
def test_hf_clip_loads_with_parity(shapes, act, tmp_path, openai_bpe, monkeypatch):
    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    if shapes != "tiny":
        skip_without_room(tmp_path, 2)
    hf = hf_model(shapes, act)
    hf.save_pretrained(tmp_path / "hf")
    ours = grounding.load(tmp_path / "hf")
    shutil.rmtree(tmp_path / "hf")  # 600 MB at ViT-B/32's shapes, and the export below writes as much again
    assert ours.config.text.activation == act and ours.config.vision.activation == act
    size = ours.config.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    ids = ours.tokenizer(["a photo of a cat", "the girl is licking the spoon of batter"])
    with torch.no_grad():
        hf_image = features(hf.get_image_features(pixel_values=pixels))
        hf_text = features(hf.get_text_features(input_ids=ids))
        hf_logits = hf(input_ids=ids, pixel_values=pixels).logits_per_image
        assert (ours.encode_image(pixels) - hf_image).abs().max() < 1e-4
        assert (ours.encode_text(ids) - hf_text).abs().max() < 1e-4
        assert (ours(pixels, ids)[0] - hf_logits).abs().max() < 1e-4

    write_hf_folder(ours, tmp_path / "back")  # and the other way
    again = transformers.CLIPModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert (features(again.get_image_features(pixel_values=pixels)) - hf_image).abs().max() < 1e-4
        assert (features(again.get_text_features(input_ids=ids)) - hf_text).abs().max() < 1e-4


def _tiny_vit(tokenizer: str):
    """The tiny preset with a trained vocabulary (end token id 2) or OpenAI's (end token 49407)."""
    config = grounding.preset("tiny")
    if tokenizer == "openai":
        config.tokenizer, config.text.vocab_size = "openai", 49408
        config.text.eot_token_id, config.text.pad_token_id = 49407, 0
    torch.manual_seed(0)
    return grounding.create_model(config).eval()


@pytest.mark.parametrize("tokenizer", ["train", "openai"])
def test_transformers_reads_our_hf_export_with_our_embeddings(tokenizer, tmp_path, openai_bpe, monkeypatch):
    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    model = _tiny_vit(tokenizer)
    assert (model.tokenizer.eot_token_id == 2) == (tokenizer == "train")  # the case transformers misreads
    write_hf_folder(model, tmp_path / "hf")
    hf = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = transformers.CLIPTokenizer.from_pretrained(tmp_path / "hf")
    texts = ["a red circle", "two blue squares above a small green triangle", "zebra!"]
    ids = hf_tokenizer(texts, padding="max_length", max_length=model.config.text.context_length,
                       return_tensors="pt").input_ids
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours_text = model.encode_text(model.tokenizer(texts))
        assert (features(hf.get_text_features(input_ids=ids)) - ours_text).abs().max() < 1e-4
        assert (features(hf.get_image_features(pixel_values=pixels)) - model.encode_image(pixels)).abs().max() < 1e-4
        back = grounding.load(tmp_path / "hf")
        assert (back.encode_text(back.tokenizer(texts)) - ours_text).abs().max() < 1e-5


def test_an_hf_folder_without_vocabulary_files_encodes_images_and_says_what_text_needs(tmp_path, openai_bpe,
                                                                                      monkeypatch):
    hf = hf_model("tiny")
    hf.save_pretrained(tmp_path / "hf")  # weights and config only: no vocab.json or merges.txt
    monkeypatch.delenv("GROUNDING_OPENAI_BPE", raising=False)  # and OpenAI's vocabulary nowhere to be found
    model = grounding.load(tmp_path / "hf")
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model.encode_image(pixels) - features(hf.get_image_features(pixel_values=pixels))).abs().max() < 1e-4
    with pytest.raises(FileNotFoundError, match="no vocab.json and merges.txt.*GROUNDING_OPENAI_BPE"):
        model.tokenizer(["a red circle"])
    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))  # once it is there, text works too
    model = grounding.load(tmp_path / "hf")
    ids = model.tokenizer(["a red circle"])
    with torch.no_grad():
        assert (model.encode_text(ids) - features(hf.get_text_features(input_ids=ids))).abs().max() < 1e-4


def test_incomplete_hf_checkpoint_lists_what_is_missing(tmp_path, openai_bpe, monkeypatch):
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    hf_model("tiny").save_pretrained(tmp_path / "hf")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    del state["text_projection.weight"]
    save_file(state, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(ValueError, match="missing text_projection.weight"):
        grounding.load(tmp_path / "hf")


PEERS = [Path(os.environ["GROUNDING_PEERS_PYTHON"])] if os.environ.get("GROUNDING_PEERS_PYTHON") else []
PEERS.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grounding" / "peers-venv" / "bin" / "python")
OPEN_CLIP_MODELS = {"ViT-B-32": "gelu", "RN50": "gelu", "ViT-B-32-quickgelu": "quick_gelu"}


@pytest.mark.slow
def test_open_clip_state_dicts_load_with_parity_both_ways(tmp_path, openai_bpe, monkeypatch):
    from grounding.formats.openai import write_open_clip

    peer = next((p for p in PEERS if p.exists()), None)
    if peer is None:
        pytest.skip("open_clip's environment is missing: docs/testing.md says how to make it "
                    "(python benchmarks/train_throughput.py --preset small --precision fp32)")
    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    skip_without_room(tmp_path, 3)
    tokenizer = grounding.Tokenizer.from_openai_merges(openai_bpe)
    torch.manual_seed(1)
    inputs = {"ids": tokenizer(["a photo of a cat", "the girl is licking the spoon of batter"]),
              "pixels224": torch.randn(2, 3, 224, 224)}
    torch.save(inputs, tmp_path / "inputs.pt")
    script = Path(__file__).parent / "peers" / "open_clip_side.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(peer), str(script), "make", str(tmp_path / "inputs.pt"), str(tmp_path / "made.pt"),
                    *OPEN_CLIP_MODELS], check=True, capture_output=True, env=env)
    made = torch.load(tmp_path / "made.pt", weights_only=True)
    for name, act in OPEN_CLIP_MODELS.items():
        ours = grounding.load(tmp_path / f"made.pt.{name}.pt", activation=act)
        (tmp_path / f"made.pt.{name}.pt").unlink()  # full-size weights: a CI disk holds only so many at once
        with torch.no_grad():
            assert (ours.encode_image(inputs["pixels224"]) - made[f"{name}/image"]).abs().max() < 1e-4, name
            assert (ours.encode_text(inputs["ids"]) - made[f"{name}/text"]).abs().max() < 1e-4, name
            assert (ours(inputs["pixels224"], inputs["ids"])[0] - made[f"{name}/logits"]).abs().max() < 1e-3, name
        # back as open_clip's model folder, which open_clip builds from our config alone (no name)
        write_open_clip(ours, tmp_path / f"back-{name}")
        inputs[f"{name}/path"] = str(tmp_path / f"back-{name}")
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run([str(peer), str(script), "check", str(tmp_path / "inputs.pt"), str(tmp_path / "checked.pt"),
                    *OPEN_CLIP_MODELS], check=True, capture_output=True, env=env)
    checked = torch.load(tmp_path / "checked.pt", weights_only=True)
    for key, value in made.items():
        assert (checked[key] - value).abs().max() < 1e-4, key


@pytest.mark.slow
def test_open_clip_reads_our_model_folder_with_its_own_vocabulary(tmp_path):
    """A model with a trained vocabulary (end token id 2), exported as open_clip's folder: open_clip
    tokenizes with the folder's files and gives our embeddings."""
    from grounding.formats.openai import write_open_clip

    peer = next((p for p in PEERS if p.exists()), None)
    if peer is None:
        pytest.skip("open_clip's environment is missing: docs/testing.md says how to make it")
    config = grounding.preset("tiny")
    config.vision.activation = config.text.activation = "quick_gelu"
    torch.manual_seed(0)
    model = grounding.create_model(config).eval()
    assert model.tokenizer.eot_token_id == 2
    write_open_clip(model, tmp_path / "oc")
    texts = ["a red circle", "two blue squares above a small green triangle"]
    inputs = {"texts": texts, "ids": model.tokenizer(texts), "pixels32": torch.randn(2, 3, 32, 32),
              "tiny/path": str(tmp_path / "oc")}
    torch.save(inputs, tmp_path / "inputs.pt")
    script = Path(__file__).parent / "peers" / "open_clip_side.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(peer), str(script), "own", str(tmp_path / "inputs.pt"), str(tmp_path / "own.pt"),
                           "tiny"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = torch.load(tmp_path / "own.pt", weights_only=True)
    assert torch.equal(theirs["tiny/ids"], inputs["ids"])  # open_clip tokenizes as we do
    with torch.no_grad():
        assert (theirs["tiny/text"] - model.encode_text(inputs["ids"])).abs().max() < 1e-4
        assert (theirs["tiny/image"] - model.encode_image(inputs["pixels32"])).abs().max() < 1e-4


def test_a_state_dict_without_activation_is_refused(tmp_path, tiny_model):
    from grounding.formats.openai import write_open_clip

    write_open_clip(tiny_model, tmp_path / "folder")  # a bare state dict would not hold its own vocabulary
    weights = tmp_path / "folder" / "open_clip_model.safetensors"
    with pytest.raises(ValueError, match="activation cannot be read from weights"):
        grounding.load(weights)
    (tmp_path / "cut.pt").write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        grounding.load(tmp_path / "cut.pt", activation="gelu")


def test_convert_command_round_trips_through_every_format(tmp_path):
    from typer.testing import CliRunner

    from grounding.interfaces.cli import app
    from grounding.saved import save_model

    config = grounding.preset("tiny")
    config.vision.activation = config.text.activation = "quick_gelu"
    torch.manual_seed(0)
    model = grounding.create_model(config).eval()
    save_model(model, tmp_path / "mine")
    runner = CliRunner()
    steps = [([str(tmp_path / "mine"), str(tmp_path / "hf"), "--to", "hf"], tmp_path / "hf"),
             ([str(tmp_path / "hf"), str(tmp_path / "again"), "--to", "grounding"], tmp_path / "again")]
    for args, out in steps:
        result = runner.invoke(app, ["convert", *args])
        assert result.exit_code == 0, result.output
    again = grounding.load(tmp_path / "again")
    pixels, texts = torch.randn(2, 3, 32, 32), ["a red circle", "a blue square"]
    with torch.no_grad():  # each with its own tokenizer: the export may renumber the end token
        assert torch.allclose(again(pixels, again.tokenizer(texts))[0], model(pixels, model.tokenizer(texts))[0],
                              atol=1e-5)
    assert again.preprocess == model.preprocess
    bare = runner.invoke(app, ["convert", str(tmp_path / "mine"), str(tmp_path / "oc.safetensors"), "--to", "open_clip"])
    assert bare.exit_code == 2 and "give a folder instead" in bare.output  # its own vocabulary needs the folder form
    result = runner.invoke(app, ["convert", str(tmp_path / "mine"), str(tmp_path / "oc"), "--to", "open_clip"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "oc").iterdir()} >= {"open_clip_config.json", "open_clip_model.safetensors",
                                                             "vocab.json", "merges.txt"}
    back = grounding.load(tmp_path / "oc")  # no activation needed: the folder says it
    with torch.no_grad():
        assert torch.allclose(back(pixels, back.tokenizer(texts))[0], model(pixels, model.tokenizer(texts))[0],
                              atol=1e-5)
    assert back.preprocess == model.preprocess and len(back.tokenizer) == len(model.tokenizer)


class _Attributes(torch.nn.Module):
    """A module tree that holds a state dict under the same dotted names, so that it can be
    scripted and saved as a TorchScript archive the way OpenAI's checkpoints are."""

    def __init__(self, state: dict):
        super().__init__()
        children: dict = {}
        for key, tensor in state.items():
            head, _, rest = key.partition(".")
            if rest:
                children.setdefault(head, {})[rest] = tensor
            else:
                self.register_parameter(head, torch.nn.Parameter(tensor.clone(), requires_grad=False))
        for name, part in children.items():
            self.add_module(name, _Attributes(part))

    def forward(self) -> int:
        return 0


def test_torchscript_archives_load_as_data_with_parity(tmp_path, openai_bpe, monkeypatch):
    from grounding.build import create_model
    from grounding.config import preset
    from grounding.formats.openai import write_open_clip

    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    config = preset("tiny")
    config.text.vocab_size, config.text.context_length, config.tokenizer = 49408, 77, "openai"
    config.vision.width = config.text.width = 64  # OpenAI's shapes: one head per 64 channels
    config.vision.heads = config.text.heads = 1
    torch.manual_seed(0)
    model = create_model(config).half().float().eval()  # OpenAI's archives hold fp16 weights
    write_open_clip(model, tmp_path / "sd.pt")
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in torch.load(tmp_path / "sd.pt", weights_only=True).items()}
    torch.jit.save(torch.jit.script(_Attributes(state)), str(tmp_path / "ViT-tiny.pt"))

    loaded = grounding.load(tmp_path / "ViT-tiny.pt", activation="gelu")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    pixels, ids = torch.randn(2, 3, 32, 32), loaded.tokenizer(["a red circle", "two blue squares"])
    with torch.no_grad():
        assert (loaded.encode_image(pixels) - model.encode_image(pixels)).abs().max() < 1e-5
        assert (loaded.encode_text(ids) - model.encode_text(ids)).abs().max() < 1e-5


def test_torchscript_archive_referring_to_code_is_refused(tmp_path):
    import pickle
    import zipfile

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Exploit()))
        archive.writestr("evil/code/__torch__.py", "")
    from typer.testing import CliRunner

    from grounding.errors import BadInput
    from grounding.interfaces.cli import app

    with pytest.raises(BadInput, match="refers to posix.system.*refusing to load it"):
        grounding.load(tmp_path / "evil.pt", activation="gelu")
    result = CliRunner().invoke(app, ["classify", str(tmp_path / "evil.pt"), "--model", str(tmp_path / "evil.pt"),
                                      "--labels", "a,b"])
    assert result.exit_code == 2 and "refusing to load it" in result.output and "Traceback" not in result.output
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


def test_weights_that_are_float16_values_are_saved_in_half_the_bytes_and_load_exactly(tmp_path):
    from grounding.build import create_model
    from grounding.config import preset
    from grounding.saved import save_model

    model = create_model(preset("tiny"))
    save_model(model, tmp_path / "full")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    save_model(model, tmp_path / "half")
    full, half = ((tmp_path / n / "model.safetensors").stat().st_size for n in ("full", "half"))
    assert half < 0.6 * full
    again = grounding.load(tmp_path / "half")
    assert all(v.dtype != torch.float16 for v in again.state_dict().values())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())


def test_matrices_saved_as_int8_rows_take_a_quarter_of_the_bytes_and_load_within_half_a_step(tmp_path):
    from safetensors import safe_open

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.saved import save_model

    torch.manual_seed(0)
    model = create_model(preset("tiny"))
    save_model(model, tmp_path / "float")
    save_model(model, tmp_path / "int8", int8=("visual.", "text."))
    size = {n: (tmp_path / n / "model.safetensors").stat().st_size for n in ("float", "int8")}
    assert size["int8"] < 0.45 * size["float"]
    with safe_open(str(tmp_path / "int8" / "model.safetensors"), "pt") as f:
        assert f.get_slice("visual.proj").get_dtype() == "I8" and "visual.proj.scale" in f.keys()
    again = grounding.load(tmp_path / "int8")
    assert again.state_dict().keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        loaded = again.state_dict()[name]
        assert loaded.dtype == value.dtype, name
        if value.dim() == 2 and name.startswith(("visual.", "text.")):
            step = value.abs().amax(dim=1, keepdim=True) / 127
            assert ((loaded - value).abs() <= step / 2 + 1e-7).all(), name
        else:
            assert torch.equal(loaded, value), name
    save_model(again, tmp_path / "resaved")  # no int8 asked: floats, the values as loaded
    assert torch.equal(grounding.load(tmp_path / "resaved").visual.proj, again.visual.proj)
