"""Retrieval: `embed`, `index build`, `search` and `retrieval-eval`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ...data.images import BATCH_SIZE, WORKERS
from ...errors import about
from ..common import App, BatchSize, Compile, Device, Precision, Workers, choice, open_model

IndexKind = choice("IndexKind", "flat", "hnsw", "ivfpq")

app = App()


@app.command(short_help="Encode images or texts into a store.")
def embed(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    out: Path = typer.Option(..., help="The embedding store's folder (sharded; a killed run resumes here)."),
    images: Optional[str] = typer.Option(None, help="A folder, folder:PATH, csv:PATH (an 'image' column, optional "
                                         "'caption'), tar:SHARDS-{000..009}.tar (webdataset), or any captioned "
                                         "images train --data lists (openclipart, emoji:STYLE, ...)."),
    texts: Optional[Path] = typer.Option(None, help="A file with one text per line, instead of --images."),
    shard_size: int = typer.Option(4096, min=1, help="Items per shard; each finished shard is kept on a restart."),
    batch_size: BatchSize = BATCH_SIZE,
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: Precision = "fp32",
    compile: Compile = False,
) -> None:
    """Encode a collection of images (or texts) into a sharded embedding store."""
    from ...tasks.retrieval.embed import embed_images, embed_texts

    if (images is None) == (texts is None):
        raise typer.BadParameter("give exactly one of --images or --texts")
    clip = open_model(model, device, precision, compile)
    if images:
        store = embed_images(clip, images, out, model, shard_size, batch_size, workers)
    else:
        store = embed_texts(clip, texts, out, model, shard_size)
    _, keys, _, skipped = store.read()
    typer.echo(f"{len(keys)} embeddings in {out}" + (f"; skipped {len(skipped)} unreadable files:" if skipped else ""))
    for message in skipped:
        typer.echo(f"  {message}")



index_app = App(help="Build vector indexes over embedding stores.")
app.add_typer(index_app, name="index")


@index_app.command("build", short_help="Build a faiss index over an embedding store.")
def index_build(
    folder: Path = typer.Argument(..., metavar="FOLDER", help="An embedding store made by `grounding embed`."),
    kind: Optional[IndexKind] = typer.Option(None, help="flat (exact), hnsw (graph) or ivfpq (compressed); by "
                                             "default exact up to 100,000 vectors, hnsw above."),
) -> None:
    """Build a faiss index over an embedding store (written atomically beside it)."""
    from ...tasks.retrieval.index import build_index

    meta = build_index(folder, kind and kind.value)
    typer.echo(f"{meta['kind']} index of {meta['count']} {meta['store']['kind']} embeddings in {folder / 'index'}")



def _loadable(spec: str) -> bool:
    from ...config import PRESETS
    from ...builtin import BUILTIN

    return spec in PRESETS or spec in BUILTIN or Path(spec).exists()



@app.command(short_help="Search an index with words or an image.")
def search(
    index: Path = typer.Argument(..., metavar="INDEX", help="An embedding store with a built index."),
    query: Optional[str] = typer.Argument(None, metavar="QUERY", help='Words to search for, e.g. "spoon".'),
    k: int = typer.Option(10, "-k", "--top-k", min=1, help="How many hits per query."),
    image: Optional[Path] = typer.Option(None, help="Search with an image instead of words."),
    queries: Optional[Path] = typer.Option(None, help="A file of queries, one per line, answered in one batch."),
    model: Optional[str] = typer.Option(None, help="The model to encode queries with; by default the index's own. "
                                        "Another model is refused."),
    sheet: Optional[Path] = typer.Option(None, help="Draw the hits of the first query as a contact sheet PNG."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per query."),
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """Search an index with words (text to image) or an image (image to image or to text)."""
    import json

    from ...tasks.retrieval.index import Index
    from ...tasks.retrieval.search import contact_sheet
    from ...tasks.retrieval.search import search as run_search

    if sum(x is not None for x in (query, image, queries)) != 1:
        raise typer.BadParameter("give exactly one of QUERY, --image or --queries")
    found = Index(index)
    made_with = found.meta["store"]["model"]
    if model is None and not _loadable(made_with):
        raise typer.BadParameter(f"the index was made with {made_with}, which is not there any more; pass --model "
                                 f"with that model (fingerprint {found.meta['store']['model_fingerprint'][:16]})")
    clip = open_model(model or made_with, device, precision)
    texts = [query] if query is not None else None
    if queries is not None:
        from ...files import read_lines

        with about("--queries"):
            texts = read_lines(queries, "one query a line")
    results = run_search(clip, found, k, texts=texts, images=[image] if image else None)
    labels = texts or [str(image)]
    for label, hits in zip(labels, results):
        if json_output:
            typer.echo(json.dumps({"query": label, "hits": [{"key": key, "score": s} for key, s in hits]}))
        else:
            typer.echo(f"{label}:")
            for rank, (key, score) in enumerate(hits, 1):
                typer.echo(f"  {rank:3d}. {score:.4f}  {key}")
    if sheet:
        contact_sheet(results[0], labels[0], sheet, found.kind)
        typer.echo(f"contact sheet: {sheet}")



@app.command("retrieval-eval", short_help="Recall@k both ways on paired data.")
def retrieval_eval(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    pairs: str = typer.Option("synthetic", help="synthetic[:n=500,seed=2]; captioned images as train --data names "
                              "them (csv:PATH with image,caption, folder:PATH, ...), each with its first caption; or "
                              "a benchmark with every caption: coco:JSON, flickr30k:JSON, wds:DIR (README: Datasets)."),
    out: Path = typer.Option(Path("runs/retrieval"), help="Where summary.json and ranks.jsonl go."),
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """Text-to-image and image-to-text recall@1/5/10 and ranks over paired data."""
    from ...tasks.retrieval.evaluate import retrieval_eval as run_eval

    clip = open_model(model, device, precision)
    with about("--pairs"):
        summary = run_eval(clip, pairs, out, workers)
    for direction in ("text_to_image", "image_to_text"):
        r = summary[direction]
        typer.echo(f"{direction.replace('_', ' ')}: R@1 {r['recall@1']:.1%}  R@5 {r['recall@5']:.1%}  "
                   f"R@10 {r['recall@10']:.1%}  mean rank {r['mean_rank']:.1f}  median rank {r['median_rank']:.0f}")
    typer.echo(f"{summary['examples']} images, {summary['captions']} captions (chance R@1 "
               f"{summary['chance_recall@1']:.2%}); ranks in {out / 'ranks.jsonl'}")
