"""Models by name from a hub: a server on 127.0.0.1 answers as the Hugging Face hub's file
endpoints do (`/ORG/NAME/resolve/REVISION/FILE`: HEAD and ranged GET, the commit and ETag
headers, X-Error-Code on a 404), and `grounding` reaches it through HF_ENDPOINT, in a process of
its own with its own HF_HOME, as a user's would."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grounding import hub
from grounding.build import create_model
from grounding.config import preset
from grounding.errors import BadInput
from grounding.formats.huggingface import write_hf_folder
from grounding.formats.openai import write_open_clip

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(ThreadingHTTPServer):
    """Repos as folders; `cut` names files whose first GET stops halfway (a dropped connection)."""

    def __init__(self, repos: dict[str, Path]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos, self.cut, self.requests = repos, set(), []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, "RepoNotFound")
        repo, name = "/".join(parts[:2]), "/".join(parts[4:])
        if repo not in self.server.repos:
            return self._error(404, "RepoNotFound")
        path = self.server.repos[repo] / name
        if not path.is_file():
            return self._error(404, "EntryNotFound")
        data = path.read_bytes()
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if name in self.server.cut and not start:
            self.server.cut.discard(name)
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops halfway through the file
            return
        self.wfile.write(data[start:])

    def _error(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        if code == "EntryNotFound":  # the hub says at which commit the file is missing
            self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def served(tmp_path_factory, siglip_folder):
    """A tiny CLIP model in the hub's two layouts, a tiny SigLIP as Google's repos hold it (its
    vocabulary a spiece.model), a repo of pickles alone, and one that is no CLIP."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    model = create_model(preset("tiny")).eval()
    write_hf_folder(model, root / "hf")
    write_open_clip(model, root / "open_clip")
    (root / "pickled").mkdir()
    (root / "pickled" / "config.json").write_text((root / "hf" / "config.json").read_text())
    torch.save({"w": torch.zeros(1)}, root / "pickled" / "pytorch_model.bin")
    (root / "bert").mkdir()
    (root / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    owlvit = __import__("transformers").OwlViTConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=64, patch_size=16), projection_dim=32)
    __import__("transformers").OwlViTForObjectDetection(owlvit).save_pretrained(root / "owlvit")
    server = Hub({"org/tiny-clip": root / "hf", "org/tiny-open-clip": root / "open_clip", "google/tiny-siglip":
                  siglip_folder[1], "google/tiny-owlvit": root / "owlvit",
                  "org/pickled": root / "pickled", "org/bert": root / "bert"})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    image = root / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
    yield server, model, image
    server.shutdown()


def _grounding(args: list[str], hf_home: Path, endpoint: str, offline: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "1" if offline else "0",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([sys.executable, "-m", "grounding", *args], capture_output=True, text=True, env=env,
                          timeout=300)


LABELS = ["a red circle", "a blue square"]


def _classify(image: Path, repo: str, hf_home: Path, endpoint: str, offline: bool = False) -> dict:
    args = ["classify", str(image), "--model", repo, "--labels", ",".join(LABELS), "--json", "--engine", "torch"]
    result = _grounding(args, hf_home, endpoint, offline)
    assert result.returncode == 0, result.stderr
    return {row["label"]: row["probability"] for row in json.loads(result.stdout)["top"]}


def _models_own(model, image: Path) -> list[float]:
    from grounding.inference.encode import classify, text_classifier

    with torch.no_grad():
        return classify(model, text_classifier(model, LABELS), model.preprocess(image)[None])[0].tolist()


@pytest.mark.parametrize("repo", ["org/tiny-clip", "hf-hub:org/tiny-open-clip"])
def test_a_hub_model_downloads_once_then_loads_offline_with_the_models_own_answers(served, tmp_path, repo):
    server, model, image = served
    online = _classify(image, repo, tmp_path / "hf", server.url)
    offline = _classify(image, repo, tmp_path / "hf", "http://127.0.0.1:9", offline=True)
    assert online == offline
    assert [online[label] for label in LABELS] == pytest.approx(_models_own(model, image), abs=1e-5)
    assert not any(p.suffix in (".bin", ".pt") for p in (tmp_path / "hf").rglob("*"))  # nothing pickled fetched
    assert hub.cached(repo.removeprefix("hf-hub:"))  # (this test's HF_HOME: see conftest.py)


def test_models_lists_the_published_names_and_marks_those_in_the_cache(served, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from grounding.interfaces.cli import app

    server, _, image = served
    monkeypatch.setitem(hub.PUBLISHED, "Tiny:test", hub.Published("org/tiny-clip", "gelu", 32, "noise"))
    listed = lambda: {line.split()[0]: line for line in CliRunner().invoke(app, ["models"]).output.splitlines()}  # noqa: E731
    assert listed()["ViT-B-32:openai"].split()[1:3] == ["(ViT-B/32)", "openai/clip-vit-base-patch32"]
    assert not listed()["Tiny:test"].endswith("cached")
    _classify(image, "org/tiny-clip", tmp_path / "hf", server.url)
    assert listed()["Tiny:test"].endswith("cached")


def test_a_siglip_repo_loads_with_its_sentencepiece_vocabulary(served, siglip_folder, tmp_path):
    """Google's layout: no tokenizer.json, a spiece.model; the answers are the folder's own
    (sigmoids: they need not sum to one)."""
    import grounding

    server, _, image = served
    answers = _classify(image, "google/tiny-siglip", tmp_path / "hf", server.url)
    own = _models_own(grounding.load(siglip_folder[1]), image)
    assert [answers[label] for label in LABELS] == pytest.approx(own, abs=1e-5) and abs(sum(own) - 1) > 1e-3
    assert list((tmp_path / "hf").rglob("spiece.model"))


def test_an_owlvit_repo_detects_by_its_name(served, tmp_path, openai_bpe):
    """A detector on the hub (google/owlvit-base-patch32's layout), named as its repo."""
    server, _, image = served
    args = ["detect", str(image), "--queries", "a cat,a dog", "--model", "google/tiny-owlvit", "--threshold", "0",
            "--json"]
    env_bpe = {"GROUNDING_OPENAI_BPE": str(openai_bpe)}
    result = subprocess.run([sys.executable, "-m", "grounding", *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env_bpe, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": server.url,
                                 "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["detections"]  # threshold 0: every candidate box answers


def test_a_download_cut_halfway_resumes(served, tmp_path):
    server, model, image = served
    server.cut.add("model.safetensors")
    before = len(server.requests)
    answers = _classify(image, "org/tiny-clip", tmp_path / "hf", server.url)
    gets = [path for method, path in server.requests[before:] if method == "GET" and path.endswith("model.safetensors")]
    assert len(gets) == 2 and "model.safetensors" not in server.cut  # cut once, then finished
    assert [answers[label] for label in LABELS] == pytest.approx(_models_own(model, image), abs=1e-5)


@pytest.mark.parametrize("repo, words", [
    ("org/pickled", "only pickled weights (pytorch_model.bin), which grounding does not download"),
    ("org/bert", "org/bert: its config.json has no vision_config, so it is not a CLIP model"),
    ("org/missing", "org/missing: no such folder here, and org/missing: no such model on the hub"),
])
def test_what_is_not_a_usable_model_on_the_hub_is_one_line(served, tmp_path, repo, words):
    server, _, image = served
    result = _grounding(["classify", str(image), "--model", repo, "--labels", "a,b"], tmp_path / "hf", server.url)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not any(p.name == "pytorch_model.bin" for p in (tmp_path / "hf").rglob("*"))


def test_offline_without_a_cached_copy_says_where_to_get_it(served, tmp_path):
    server, _, image = served
    result = _grounding(["classify", str(image), "--model", "ViT-B/32", "--labels", "a,b"], tmp_path / "hf",
                        server.url, offline=True)
    assert result.returncode == 2, result.stderr
    assert "openai/clip-vit-base-patch32 is not in the local cache and the hub cannot be reached" in result.stderr
    assert "hf download openai/clip-vit-base-patch32" in result.stderr


def test_names_resolve_to_repos_and_local_paths_stay_local(tmp_path, monkeypatch):
    assert hub.repo_of("ViT-B/32") == hub.repo_of("ViT-B-32:openai") == "openai/clip-vit-base-patch32"
    assert hub.repo_of("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K") == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert hub.repo_of("org/name") == "org/name"
    assert hub.repo_of("ViT-B-16-SigLIP:webli") == "google/siglip-base-patch16-224"
    assert hub.repo_of("OWL-ViT-B-32:google", "detect") == "google/owlvit-base-patch32"
    with pytest.raises(BadInput, match="is a detector, not a CLIP model"):
        hub.repo_of("OWL-ViT-B-32:google")
    assert hub.repo_of("runs") is None and hub.repo_of("./runs/demo") is None and hub.repo_of("a/b/c") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    from grounding.errors import NotFound
    from grounding.saved import load

    with pytest.raises(NotFound, match="runs/demo: no config.json here"):  # a local folder's typo, not a hub call
        load("runs/demo")
