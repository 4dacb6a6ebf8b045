"""Encoding speed (images/s, texts/s) of grounding beside open_clip and transformers, in every
precision each offers, with the same shapes and random weights, in fresh processes of 2 threads
(every implementation on the peers' PyTorch, in the virtual environment train_throughput.py
makes; `--own-torch` runs grounding on this environment's). A faster mode
counts only if its accuracy guard holds: its features have a cosine similarity of at least 0.999
to the same implementation's fp32 ones. The machine's own matrix-multiply rate gives the limit
for ViT-B/32 (8.8 GFLOP an image), printed beside.

    COLUMNS=120 python benchmarks/encode.py     # about 8 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from train_throughput import CACHE, ENV, HERE, host, peers_python

GFLOP_PER_IMAGE = {"ViT-B-32": 8.8, "RN50": 8.2}  # multiply-adds x 2 of one 224 px image
MODES = ("fp32", "bf16-autocast", "bf16-weights", "bf16-compiled")
LABELS = ["cat", "dog", "spoon", "bicycle", "red circle", "hippopotamus", "traffic light", "the Eiffel tower"]


def inputs(peers: Path) -> Path:
    """Pixels and OpenAI-vocabulary ids of short prompts, saved for every implementation."""
    from grounding.tokenizer import Tokenizer

    found = subprocess.run([str(peers), "-c", "import open_clip, os; print(os.path.dirname(open_clip.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    tokenizer = Tokenizer.from_openai_merges(Path(found) / "bpe_simple_vocab_16e6.txt.gz")
    prompts = [f"a photo of a {label}, number {i}." for i in range(32) for label in LABELS]  # 256, under 16 tokens
    torch.manual_seed(0)
    path = CACHE / "encode-inputs.pt"
    CACHE.mkdir(exist_ok=True)
    torch.save({"pixels": torch.randn(64, 3, 224, 224), "ids": tokenizer(prompts)}, path)
    return path


def measure(python: Path, impl: str, name: str, kind: str, mode: str, batch: int, repeats: int, data: Path
            ) -> tuple[float, torch.Tensor]:
    out = CACHE / f"features-{impl}-{name}-{kind}-{mode}.pt"
    env = {**os.environ, **ENV, "PYTHONPATH": str(HERE.parent / "src")}
    done = subprocess.run([str(python), str(HERE / "encode_worker.py"), impl, name, kind, mode, str(batch),
                           str(repeats), str(data), str(out)], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{impl} {name} {kind} {mode} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["per_s"], torch.load(out, weights_only=True)


def matmul_rate(dtype: torch.dtype) -> float:
    """GFLOP/s of a ViT-B/32-sized matrix multiply (50 tokens x 32 images by 768 x 3072), 2 threads."""
    torch.set_num_threads(2)
    a, b = torch.randn(1600, 768, dtype=dtype), torch.randn(768, 3072, dtype=dtype)
    for _ in range(3):
        a @ b
    began, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    return 2 * 1600 * 768 * 3072 * n / (time.perf_counter() - began) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--own-torch", action="store_true", help="run grounding on this environment's PyTorch, "
                        "not the peers'")
    args = parser.parse_args()
    peers = peers_python()
    our_python = Path(sys.executable) if args.own_torch else peers
    data = inputs(peers)
    cases = [("ViT-B-32", "image", 32), ("RN50", "image", 32), ("ViT-B-32", "text", 256)]
    console = Console()
    console.print(f"host: {host(our_python)}" + ("" if our_python == peers else f"; peers: {host(peers)}"))
    for name, kind, batch in cases:
        table = Table("implementation", "precision", f"{kind}s/s", "cosine to its fp32", "guard",
                      "x best peer, same precision",
                      title=f"{name} {kind} encoding, batch {batch}, 2 threads"
                            + (" (grounding trims the padding of short prompts; the peers run 77 tokens)"
                               if kind == "text" else ""))
        rows = []
        for impl in ("grounding", "open_clip", "transformers"):
            if impl == "transformers" and name == "RN50":
                continue  # transformers' CLIPModel holds ViTs only
            reference = None
            for mode in MODES:
                if impl == "grounding" and mode == "bf16-autocast":
                    continue  # grounding converts the weights once instead
                if mode == "bf16-compiled" and (impl != "grounding" or kind == "text"):
                    continue  # grounding's --compile, which compiles the image encoder
                python = our_python if impl == "grounding" else peers
                rate, features = measure(python, impl, name, kind, mode, batch, args.repeats, data)
                reference = features if mode == "fp32" else reference
                cosine = torch.nn.functional.cosine_similarity(features, reference).min().item()
                rows.append((impl, mode, rate, cosine, cosine >= 0.999))
        def best_peer(mode: str) -> float:  # the fastest peer in the same precision (fp32, or any bf16 mode)
            return max(r[2] for r in rows if r[0] != "grounding" and r[4] and r[1][:4] == mode[:4])

        for impl, mode, rate, cosine, ok in rows:
            table.add_row(impl, mode, f"{rate:.1f}", f"{cosine:.5f}", "holds" if ok else "FAILS",
                          f"{rate / best_peer(mode):.2f}x" if impl == "grounding" and ok else "")
        console.print(table)
        if kind == "image":
            for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
                limit = matmul_rate(dtype) / GFLOP_PER_IMAGE[name]
                ours = max((r[2] for r in rows if r[0] == "grounding" and r[4] and r[1].startswith(label)), default=0)
                console.print(f"  {label} matrix multiply gives at most {limit:.1f} {name} images/s; grounding in "
                              f"{label}: {ours:.1f}, {ours / limit:.0%} of it")


if __name__ == "__main__":
    main()
