"""What a zero-shot evaluation reports: a summary of metrics, one JSON line per example, and a
self-contained HTML page (images and plots embedded, no network needed) with the summary, a
confusion heat map, a reliability plot and a gallery of example cards."""
from __future__ import annotations

import base64
import html
import io
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data.examples import Dataset  # noqa: E402
from ..files import write_jsonl_atomic, write_text_atomic  # noqa: E402
from . import metrics  # noqa: E402
from .predict import Predictions  # noqa: E402
from .zeroshot import Example  # noqa: E402


def single_targets(dataset: Dataset, predictions: Predictions) -> np.ndarray:
    return np.array([dataset.targets[i][0] for i in predictions.indices], dtype=np.int64)


def relevance(dataset: Dataset, predictions: Predictions) -> np.ndarray:
    rel = np.zeros(predictions.logits.shape, dtype=bool)
    for row, i in enumerate(predictions.indices):
        rel[row, list(dataset.targets[i])] = True
    return rel


def summarize(dataset: Dataset, predictions: Predictions, bootstrap: int = 1000, seed: int = 0) -> dict:
    n_labels = len(dataset.classes)
    summary = {"dataset": dataset.name, "examples": int(len(predictions.indices)), "labels": n_labels,
               "skipped": len(predictions.skipped), "chance_top1": 1 / n_labels, "notes": dataset.notes}
    if dataset.multi_label:
        mean_ap, per_label = metrics.mean_average_precision(predictions.logits, relevance(dataset, predictions))
        summary.update(multi_label=True, mean_average_precision=mean_ap,
                       per_label_ap={c: (None if np.isnan(a) else float(a)) for c, a in zip(dataset.classes, per_label)})
        return summary
    targets = single_targets(dataset, predictions)
    ranks = metrics.ranks(predictions.logits, targets)
    probs = predictions.probs
    predicted = probs.argmax(axis=1)
    correct1, correct5 = (ranks <= 1).astype(float), (ranks <= 5).astype(float)
    matrix = metrics.confusion_matrix(predicted, targets, n_labels)
    recall = metrics.per_class_recall(predicted, targets, n_labels)
    summary.update(
        multi_label=False,
        top1=float(correct1.mean()) if len(ranks) else float("nan"),
        top1_ci=metrics.bootstrap_interval(correct1, bootstrap, seed),
        top5=float(correct5.mean()) if len(ranks) else float("nan"),
        top5_ci=metrics.bootstrap_interval(correct5, bootstrap, seed + 1),
        mean_per_class_recall=metrics.mean_per_class_recall(predicted, targets, n_labels),
        per_class_accuracy={c: (None if np.isnan(r) else float(r)) for c, r in zip(dataset.classes, recall)},
        most_confused=metrics.most_confused(matrix, dataset.classes),
        calibration=metrics.calibration(probs.max(axis=1), (predicted == targets).astype(float)),
    )
    return summary


def example_records(dataset: Dataset, predictions: Predictions, k: int = 5) -> list[dict]:
    """One record per example: key, correct label(s), rank r/N, probability, top-k labels."""
    probs, records = predictions.probs, []
    n = len(dataset.classes)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    for row, i in enumerate(predictions.indices):
        p = probs[row]
        truth = dataset.targets[i]
        ranks = [int((p > p[t]).sum()) + 1 for t in truth]
        records.append({
            "index": int(i), "path": dataset.keys[i], "label": " | ".join(dataset.classes[t] for t in truth),
            "rank": " ".join(f"{r}/{n}" for r in ranks), "best_rank": min(ranks),
            "probability": float(max(p[t] for t in truth)),
            "top": [[dataset.classes[j], float(p[j])] for j in order[row]],
        })
    return records


def write_predictions(path: Path, records: list[dict]) -> None:
    write_jsonl_atomic(path, ({k: v for k, v in r.items() if k not in ("index", "best_rank")} for r in records))


def as_example(record: dict) -> Example:
    return Example(record["label"], record["best_rank"], int(record["rank"].split("/")[1].split()[0]),
                   record["probability"], [tuple(t) for t in record["top"]])


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _thumbnail(dataset: Dataset, index: int) -> str:
    return base64.b64encode(dataset.images[index].thumbnail(format="PNG")).decode()


def confusion_plot(dataset: Dataset, predictions: Predictions) -> str:
    targets = single_targets(dataset, predictions)
    matrix = metrics.confusion_matrix(predictions.logits.argmax(axis=1), targets, len(dataset.classes))
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(dataset.classes)
    fig, ax = plt.subplots(figsize=(min(14, 2 + 0.35 * n), min(14, 2 + 0.35 * n)))
    ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), dataset.classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), dataset.classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (row-normalised)")
    return _png(fig)


def reliability_plot(calibration: dict) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    bins = calibration["bins"]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
           align="edge", alpha=0.7, edgecolor="black", label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3", label="bin mean")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {calibration['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _card_html(dataset: Dataset, record: dict, group: str) -> str:
    bars = "".join(
        f'<div class="bar"><span class="name{" hit" if name in record["label"].split(" | ") else ""}">'
        f'{html.escape(name)}</span><span class="fill" style="width:{100 * p:.1f}%"></span>'
        f'<span class="p">{p:.1%}</span></div>' for name, p in record["top"])
    return (f'<div class="card" data-label="{html.escape(record["label"])}" data-group="{group}">'
            f'<img src="data:image/png;base64,{_thumbnail(dataset, record["index"])}">'
            f'<div class="info"><div class="truth">correct label: <b>{html.escape(record["label"])}</b></div>'
            f'<div>correct rank: {record["rank"]} · correct probability: {record["probability"]:.2%}</div>'
            f'{bars}<div class="path">{html.escape(record["path"])}</div></div></div>')


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.plots img{max-width:48%;vertical-align:top}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.card{display:flex;gap:8px;border:1px solid #ddd;border-radius:6px;
padding:8px;width:520px}.card img{width:160px;height:160px;object-fit:contain;background:#f4f4f4}
.info{flex:1;font-size:13px}.bar{display:flex;align-items:center;gap:4px;margin:2px 0}.name{width:150px;
overflow:hidden;white-space:nowrap;text-overflow:ellipsis}.hit{color:#2e7d32;font-weight:bold}
.fill{height:10px;background:#90a4ae;display:inline-block}.p{font-size:11px}.path{color:#888;font-size:10px;
word-break:break-all}"""
SCRIPT = """function show(){const g=document.getElementById('group').value,c=document.getElementById('cls').value;
for(const e of document.querySelectorAll('.card')){e.style.display=((g==='all'||e.dataset.group===g)&&
(c==='all'||e.dataset.label.split(' | ').includes(c)))?'flex':'none'}}"""


def write_html(path: Path, dataset: Dataset, predictions: Predictions, summary: dict, records: list[dict],
               title: str, per_group: int = 12, seed: int = 0) -> None:
    rows = [("examples", summary["examples"]), ("labels", summary["labels"]), ("skipped (unreadable)", summary["skipped"])]
    plots = ""
    if summary["multi_label"]:
        rows.append(("mean average precision", f"{summary['mean_average_precision']:.3f}"))
        ordered = sorted(records, key=lambda r: r["probability"])
    else:
        lo1, hi1 = summary["top1_ci"]
        lo5, hi5 = summary["top5_ci"]
        rows += [("top-1 accuracy", f"{summary['top1']:.2%} (95% CI {lo1:.2%}–{hi1:.2%})"),
                 ("top-5 accuracy", f"{summary['top5']:.2%} (95% CI {lo5:.2%}–{hi5:.2%})"),
                 ("mean per-class recall", f"{summary['mean_per_class_recall']:.2%}"),
                 ("chance (top-1)", f"{summary['chance_top1']:.2%}"),
                 ("expected calibration error", f"{summary['calibration']['ece']:.3f}")]
        rows += [(f"confused: {t} → {p}", n) for t, p, n in summary["most_confused"][:5]]
        plots = (f'<div class="plots"><img src="data:image/png;base64,{confusion_plot(dataset, predictions)}">'
                 f'<img src="data:image/png;base64,{reliability_plot(summary["calibration"])}"></div>')
        ordered = sorted(records, key=lambda r: (r["best_rank"], -r["probability"]))
    picks = {"best": ordered[:per_group], "worst": ordered[::-1][:per_group],
             "random": random.Random(seed).sample(records, min(per_group, len(records)))}
    cards = "".join(_card_html(dataset, r, group) for group, chosen in picks.items() for r in chosen)
    shown = sorted({label for chosen in picks.values() for r in chosen for label in r["label"].split(" | ")})
    options = "".join(f"<option>{html.escape(c)}</option>" for c in shown)
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in summary["notes"])
    per_class = summary["per_label_ap"] if summary["multi_label"] else summary["per_class_accuracy"]
    heading = "average precision" if summary["multi_label"] else "accuracy (recall)"
    per_class_rows = "".join(f"<tr><td>{html.escape(c)}</td><td>{'-' if v is None else f'{v:.2%}'}</td></tr>"
                             for c, v in sorted(per_class.items(), key=lambda kv: -1 if kv[1] is None else kv[1]))
    plots += (f"<details><summary>per class: {heading}</summary><table><tr><th>class</th><th>{heading}</th></tr>"
              f"{per_class_rows}</table></details>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>{notes}"
            f"<table>{table}</table>{plots}<h2>Examples</h2><p>show <select id='group' onchange='show()'>"
            f"<option>all</option><option>best</option><option>worst</option><option>random</option></select> "
            f"class <select id='cls' onchange='show()'><option>all</option>{options}</select></p>"
            f"<div class='gallery'>{cards}</div></body></html>")
    write_text_atomic(path, page)


def export_cards(folder: Path, dataset: Dataset, records: list[dict]) -> None:
    from .cards import save_card

    for record in records:
        name = f"{record['index']:06d}.png"
        save_card(dataset.image(record["index"]), as_example(record), folder / name)
