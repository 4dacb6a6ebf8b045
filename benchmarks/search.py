"""Vector search at scale: index build time and peak memory, query latency p50/p99 for single
queries and batches of 64 (one thread), and recall@10 of the approximate index against exact
search, on random unit vectors (the hardest case: no cluster structure to exploit).

    python benchmarks/search.py --n 1000000 --dim 512
"""
from __future__ import annotations

import argparse
import resource
import time

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from grounding.tasks.retrieval.index import make_index


def unit(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - i), dim), dtype=np.float32)
        out[i:i + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int = 10_000, spread: float = 0.7,
              chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around random centres, the structure real embeddings have (many items near
    a few topics), unlike uniform random vectors."""
    centres = unit(rng, clusters, dim)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        x = centres[rng.integers(0, clusters, m)] + spread / np.sqrt(dim) * rng.standard_normal((m, dim), dtype=np.float32)
        out[i:i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def latencies(index, queries: np.ndarray, k: int, batch: int) -> np.ndarray:
    times = []
    for i in range(0, len(queries), batch):
        began = time.perf_counter()
        index.search(queries[i:i + batch], k)
        times.append((time.perf_counter() - began) * 1000)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=640)
    parser.add_argument("--kinds", nargs="*", default=["hnsw", "ivfpq"])
    parser.add_argument("--ef", type=int, nargs="*", default=[64, 128, 256, 512], help="HNSW efSearch values")
    parser.add_argument("--data", choices=["random", "clustered"], default="random",
                        help="uniform random unit vectors (the issue's case), or clustered ones like real embeddings")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.data == "random":
        data, queries = unit(rng, args.n, args.dim), unit(rng, args.queries, args.dim)
    else:  # queries drawn like the data: new points near the same centres
        both = clustered(rng, args.n + args.queries, args.dim)
        data, queries = both[:args.n], both[args.n:]
    console = Console()
    columns = ("index", "build s", "peak GiB after build", "p50 ms (1 query)", "p99 ms (1 query)",
               "p50 ms (batch of 64)", "recall@10")
    rows = []

    def add_row(*cells: str) -> None:  # printed at once too: a long build must not hide earlier rows
        rows.append(cells)
        console.print(" | ".join(f"{c}: {v}" for c, v in zip(columns, cells)))

    table = Table(*columns, title=f"{args.n:,} {args.data} unit vectors of dimension {args.dim}; queries on 1 thread")
    base = peak_gib()
    began = time.perf_counter()
    exact = make_index(data, "flat")
    faiss.omp_set_num_threads(1)
    truth = np.concatenate([exact.search(queries[i:i + 64], 10)[1] for i in range(0, len(queries), 64)])
    single, batched = latencies(exact, queries[:64], 10, 1), latencies(exact, queries, 10, 64)
    add_row("exact (flat inner product)", f"{time.perf_counter() - began:.1f}", f"{peak_gib():.2f}",
                  f"{np.median(single):.2f}", f"{np.percentile(single, 99):.2f}", f"{np.median(batched):.1f}", "1.000")
    del exact
    for kind in args.kinds:
        faiss.omp_set_num_threads(2)
        console.log(f"building {kind}")
        began = time.perf_counter()
        index = make_index(data, kind)
        build = time.perf_counter() - began
        faiss.omp_set_num_threads(1)
        settings = [("efSearch", ef) for ef in args.ef] if kind == "hnsw" else [("nprobe", p) for p in (16, 64, 256)]
        for name, value in settings:
            if kind == "hnsw":
                index.hnsw.efSearch = value
            else:
                faiss.downcast_index(index.base_index).nprobe = value
            found = np.concatenate([index.search(queries[i:i + 64], 10)[1] for i in range(0, len(queries), 64)])
            recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
            single, batched = latencies(index, queries, 10, 1), latencies(index, queries, 10, 64)
            add_row(f"{kind} ({name} {value})", f"{build:.1f}", f"{peak_gib():.2f}", f"{np.median(single):.2f}",
                          f"{np.percentile(single, 99):.2f}", f"{np.median(batched):.1f}", f"{recall:.3f}")
        del index
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"data alone: {data.nbytes / 2**30:.2f} GiB; process peak before indexing {base:.2f} GiB")


if __name__ == "__main__":
    main()
