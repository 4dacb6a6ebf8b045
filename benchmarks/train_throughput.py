"""Training throughput (image-text pairs/s) and peak memory of grounding beside open_clip and
transformers' CLIPModel, built with the same shapes and random weights, fed the same real
captions (the synthetic world's, tokenised to the context length) and random pixels, each
stepped by the AdamW its own trainer uses (train_worker.py: optimizer_of).

    python benchmarks/train_throughput.py                # both presets, fp32 and bf16
    python benchmarks/train_throughput.py --preset small --repeats 5

Each measurement runs in a fresh process, every implementation on the same PyTorch: the
peers' virtual environment, made on first use at ~/.cache/grounding/peers-venv (one per
machine) with `pip install torch==2.14.1 torchvision==0.29.1 open_clip_torch transformers`,
runs grounding too (from this checkout's src/), so no ratio is a difference of PyTorch builds
(`--own-torch` runs grounding on this environment's instead). All processes get the same
allocator settings (see docs/benchmarks.md) and the same thread count. The host's CPU and the
instruction sets that decide bf16 speed (AVX-512 bf16, AMX) are printed above the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

import torch
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
PEERS_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grounding" / "peers-venv"
CACHE = HERE / ".cache"
PEERS = ["open_clip", "transformers"]
BATCH = {"small": 64, "ViT-B-32": 32}
ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "268435456", "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false",
}


def peers_python() -> Path:
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.14.1", "torchvision==0.29.1",
                        "open_clip_torch", "transformers"], check=True)
    return python


def host(python: Path) -> str:
    """The CPU, its bf16-relevant instruction sets, and the PyTorch `python` runs."""
    model, flags = "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    version = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True).stdout.strip()
    present = " ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)
    return f"{model}, {os.cpu_count()} cores; {present}; torch {version}"


def captions(preset: str, peers: Path | None) -> Path:
    """The synthetic world's captions as token ids, saved for every implementation to load."""
    from grounding.config import preset as grounding_preset
    from grounding.data.synthetic import World
    from grounding.tokenizer import Tokenizer
    from grounding.vocabulary import build_tokenizer

    path = CACHE / f"ids-{preset}.pt"
    if path.exists():
        return path
    config = grounding_preset(preset)
    if config.tokenizer == "openai" and peers is not None and "GROUNDING_OPENAI_BPE" not in os.environ:
        found = subprocess.run([str(peers), "-c", "import open_clip, os; print(os.path.dirname(open_clip.__file__))"],
                               capture_output=True, text=True, check=True).stdout.strip()
        tokenizer = Tokenizer.from_openai_merges(Path(found) / "bpe_simple_vocab_16e6.txt.gz",
                                                 config.text.context_length)
    else:
        tokenizer = build_tokenizer(config)
    scenes = World().batch(seed=0, index=0, size=max(BATCH.values()))
    ids = tokenizer([s.caption() for s in scenes])
    CACHE.mkdir(exist_ok=True)
    torch.save({"ids": ids, "vocab": config.text.vocab_size, "eot": tokenizer.eot_token_id}, path)
    return path


def measure(python: Path, impl: str, preset: str, precision: str, text: str, repeats: int, data: Path) -> dict:
    env = {**os.environ, **ENV, "PYTHONPATH": str(HERE.parent / "src")}
    out = subprocess.run([str(python), str(HERE / "train_worker.py"), impl, preset, precision, text,
                          str(BATCH[preset]), str(repeats), str(data)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{impl} {preset} {precision} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["small", "ViT-B-32"], nargs="*", default=["small", "ViT-B-32"])
    parser.add_argument("--precision", choices=["fp32", "bf16"], nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement; the median is shown")
    parser.add_argument("--rounds", type=int, default=1, help="run every implementation this many times in turn "
                        "and show the medians, with the range of the rounds' ratios (for a host whose speed drifts)")
    parser.add_argument("--no-peers", action="store_true", help="measure grounding alone")
    parser.add_argument("--own-torch", action="store_true", help="run grounding on this environment's PyTorch, "
                        "not the peers'")
    args = parser.parse_args()
    peers = None if args.no_peers else peers_python()
    ours = Path(sys.executable) if args.own_torch or peers is None else peers
    console = Console()
    console.print(f"host: {host(ours)}" + ("" if ours == peers or peers is None else f"; peers: {host(peers)}"))
    rounds = f", {args.rounds} rounds" if args.rounds > 1 else ""
    table = Table("preset", "precision", "implementation", "pairs/s", "x best peer", "peak GiB",
                  title=f"Training throughput, {ENV['OMP_NUM_THREADS']} threads, median of {args.repeats} steps{rounds}")
    for preset in args.preset:
        data = captions(preset, peers)
        for precision in args.precision:
            runs = [("grounding", "trimmed", ours), ("grounding", "full", ours)]
            runs += [(peer, "full", peers) for peer in PEERS] if peers else []
            rows = []  # one {(impl, text): result} a round
            for round_ in range(args.rounds):
                rows.append({})
                for impl, text, python in runs:
                    console.log(f"{preset} {precision} {impl} ({text} text){rounds and f', round {round_ + 1}'}")
                    rows[-1][(impl, text)] = measure(python, impl, preset, precision, text, args.repeats, data)
            for impl, text, _ in runs:
                name = impl + (" (full-length text)" if impl == "grounding" and text == "full" else "")
                speeds = [row[(impl, text)]["pairs_per_s"] for row in rows]
                peak = max(row[(impl, text)]["peak_gib"] for row in rows)
                table.add_row(preset, precision, name, f"{median(speeds):.1f}", _ratio(rows, impl, text), f"{peak:.2f}")
    console.print(table)


def _ratio(rows: list[dict], impl: str, text: str) -> str:
    """The median over rounds of a round's speed over that round's best peer, with the rounds' range."""
    ratios = [row[(impl, text)]["pairs_per_s"] / max(row[(p, "full")]["pairs_per_s"] for p in PEERS)
              for row in rows if all((p, "full") in row for p in PEERS)]
    if not ratios:
        return "-"
    return f"{median(ratios):.2f}" + (f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else "")


if __name__ == "__main__":
    main()
