"""Load on `grounding serve`: the server runs on loopback in its own process; a bounded number of
/classify requests go at concurrency 1, 8 and 32, then a mixed load with /search. Reports
throughput, p50 and p99 latency, errors, and the server's resident memory over the run.

Then a load of large but legal images: requests of --max-images 6000x6000 PNGs (116 KB each, within
the byte and pixel limits) at concurrency 4, in rounds.

Targets: no errors; throughput at concurrency 32 at least 3x that at concurrency 1 (batching);
memory flat under a steady load (under 5% growth between the first and last quarter of the
mixed load, which runs twice as long as the others); under the large images, resident memory
above idle at most 4 bytes per pixel of the server's --max-held-pixels budget, and back within
10% of where it was before them once they are answered.

    python benchmarks/serve_load.py --requests 2000          # the built-in model; about 10 minutes
    python benchmarks/serve_load.py --requests 300 --model tiny-run-folder
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

LABELS = "a cat,a dog,a spoon,a red circle,a bicycle,a tree,a car,a flag,a shoe,a cup"


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def large_png(side: int = 6000) -> bytes:
    """A side x side gradient: tiny as a PNG, 3 bytes a pixel decoded."""
    from PIL import Image

    row = np.linspace(0, 255, side, dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.stack([np.tile(row, (side, 1))] * 3, axis=-1)).save(out, "PNG")
    return out.getvalue()


async def large_load(base: str, rounds: int, concurrency: int, images: int, pid: int) -> dict:
    """Rounds of `concurrency` requests of `images` large PNGs each: resident memory before, at
    its peak during, and after."""
    data, statuses, peak = large_png(), [], 0.0
    before = resident_mib(pid)
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        for _ in range(rounds):
            tasks = [asyncio.create_task(client.post(
                "/classify", files=[("images", (f"{i}.png", data, "image/png")) for i in range(images)],
                data={"labels": LABELS})) for _ in range(concurrency)]
            while not all(t.done() for t in tasks):
                peak = max(peak, resident_mib(pid))
                await asyncio.sleep(0.05)
            statuses += [t.result().status_code for t in tasks]
    await asyncio.sleep(1)
    return {"before": before, "peak": peak, "after": resident_mib(pid), "errors": sum(s != 200 for s in statuses),
            "requests": len(statuses), "png_kb": len(data) / 1024}


def scene_png(i: int) -> bytes:
    from grounding.data.synthetic import World

    out = io.BytesIO()
    World().sample(np.random.default_rng(i), "any").render(96).save(out, "PNG")
    return out.getvalue()


async def load(base: str, requests: int, concurrency: int, images: list[bytes], mixed: bool, pid: int,
               memory: list[float]) -> dict:
    latencies, errors, sent = [], 0, iter(range(requests))

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in sent:
            began = time.perf_counter()
            if mixed and i % 4 == 3:
                answer = await client.get("/search", params={"q": "a red circle", "k": 10})
            else:
                answer = await client.post("/classify", files={"images": ("s.png", images[i % len(images)], "image/png")},
                                           data={"labels": LABELS})
            latencies.append(time.perf_counter() - began)
            errors += answer.status_code != 200
            if i % 25 == 0:
                memory.append(resident_mib(pid))

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        await asyncio.gather(*[one(client) for _ in range(concurrency)])
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"per_s": requests / elapsed, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--model", default="lit-minilm-effnet")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = Path(tempfile.mkdtemp())
    images = [scene_png(i) for i in range(16)]
    for i, data in enumerate(images):
        (work / f"{i}.png").write_bytes(data)
    grounding = [sys.executable, "-c", "from grounding.interfaces.cli import app; app()"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run([*grounding, "embed", "--model", args.model, "--images", str(work), "--out", str(work / "store"),
                    "--workers", "0"], check=True, capture_output=True, env=env)
    subprocess.run([*grounding, "index", "build", str(work / "store")], check=True, capture_output=True, env=env)
    server = subprocess.Popen([*grounding, "serve", "--model", args.model, "--index", str(work / "store"),
                               "--port", str(port), "--device", "cpu"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        table = Table("load", "requests", "requests/s", "p50 ms", "p99 ms", "errors", "peak MiB",
                      title=f"grounding serve, {args.model}, loopback, 2 threads")
        results = {}
        for concurrency, mixed in ((1, False), (8, False), (32, False), (32, True)):
            name = f"classify, concurrency {concurrency}" + (" + search (1 in 4)" if mixed else "")
            memory: list[float] = []
            count = args.requests * (2 if mixed else 1)
            results[name] = r = asyncio.run(load(base, count, concurrency, images, mixed, server.pid, memory))
            table.add_row(name, str(count), f"{r['per_s']:.1f}", f"{r['p50']:.0f}", f"{r['p99']:.0f}",
                          str(r["errors"]), f"{max(memory):.0f}")
        console = Console()
        console.print(table)
        quarter = max(1, len(memory) // 4)  # of the mixed load, the last
        first, last = statistics.mean(memory[:quarter]), statistics.mean(memory[-quarter:])
        ratio = results["classify, concurrency 32"]["per_s"] / results["classify, concurrency 1"]["per_s"]
        console.print(f"concurrency 32 over 1: {ratio:.2f}x (target 3x); resident memory {first:.0f} MiB in the first "
                      f"quarter of the steady load, {last:.0f} MiB in the last ({last / first - 1:+.1%}; target under +5%); "
                      f"errors {sum(r['errors'] for r in results.values())} (target 0)")
        console.print("(memory: the mixed load's first and last quarter)")
        held, images = 80_000_000, 16  # the server's defaults (server/settings.py)
        large = asyncio.run(large_load(base, 3, 4, images, server.pid))
        allowed = 4 * held / 2 ** 20
        console.print(f"large images: {large['requests']} requests of {images} 6000x6000 PNGs ({large['png_kb']:.0f} KB "
                      f"each; {large['errors']} errors): resident {large['before']:.0f} MiB before, peak "
                      f"{large['peak']:.0f} (+{large['peak'] - large['before']:.0f}; target at most +{allowed:.0f}), "
                      f"{large['after']:.0f} after ({large['after'] / large['before'] - 1:+.1%}; target within 10%)")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
