"""`anomascope eval`'s report.html: side-by-side table, plotly ROC/PR curves, example overlays."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from anomascope.engine.display import apply_window, overlay_heatmap
from anomascope.engine.evaluation import Evaluation, TestImage, best_median_worst
from anomascope.engine.io import load_case

TABLE_KEYS = ["pixel_auroc", "pixel_ap", "max_dice", "dice", "iou", "image_auroc", "image_ap", "froc_10fp"]


def render_report(evaluations: list[Evaluation], images: list[TestImage], title: str) -> str:
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}table{border-collapse:collapse}"
        "tr:nth-child(even){background:#f3f3f3}img{margin:4px;border:1px solid #ccc}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table(evaluations),
    ]
    first = True
    for key, axes in (
        ("pixel_roc", ("FPR", "TPR")),
        ("pixel_pr", ("recall", "precision")),
        ("image_roc", ("FPR", "TPR")),
        ("image_pr", ("recall", "precision")),
    ):
        traces = [
            go.Scatter(x=e.curves[key][0], y=e.curves[key][1], name=e.name, mode="lines")
            for e in evaluations
            if key in e.curves
        ]
        if not traces:
            continue
        figure = go.Figure(
            traces,
            layout=dict(title=key.replace("_", " "), xaxis_title=axes[0], yaxis_title=axes[1], width=520, height=420),
        )
        # The first figure carries plotly.js inline so the report opens offline.
        parts.append(figure.to_html(full_html=False, include_plotlyjs=True if first else False))
        first = False
    for evaluation in evaluations:
        parts.append(_examples(evaluation, images))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(evaluations: list[Evaluation]) -> str:
    head = (
        "<tr><th>method</th>" + "".join(f"<th>{k}</th>" for k in TABLE_KEYS) + "<th>threshold</th><th>s/image</th></tr>"
    )
    rows = []
    for e in evaluations:
        cells = "".join(f"<td>{_value(e.metrics[k], e.metrics[k + '_std'])}</td>" for k in TABLE_KEYS)
        threshold = e.metrics["threshold"]
        rows.append(
            f"<tr><td>{html.escape(e.name)}</td>{cells}<td>{'—' if threshold is None else f'{threshold:.4g}'}"
            f"</td><td>{e.metrics['seconds_per_image']:.3f}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _value(value, std) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _examples(evaluation: Evaluation, images: list[TestImage]) -> str:
    """Best, median and worst anomalous cases by Dice at the threshold (by image score if image-level)."""
    picks = best_median_worst(evaluation.per_image_dice)
    if not picks:
        picks = best_median_worst(
            [score if label else None for score, label in zip(evaluation.image_scores, evaluation.labels, strict=True)]
        )
    if not picks:
        return ""
    cells = []
    for label, index in picks.items():
        case = load_case(images[index].path)
        base = apply_window(case.pixels[0], *case.window)
        heatmap = evaluation.heatmaps[index] if evaluation.heatmaps else None
        shown = (
            base
            if heatmap is None
            else overlay_heatmap(base, heatmap, float(np.percentile(heatmap, 50)), float(heatmap.max()))
        )
        buffer = io.BytesIO()
        Image.fromarray(shown).save(buffer, format="PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        cells.append(
            f"<figure style='display:inline-block'><img src='data:image/png;base64,{encoded}'>"
            f"<figcaption>{label}: {html.escape(images[index].path.name)}</figcaption></figure>"
        )
    return f"<h2>{html.escape(evaluation.name)}: examples</h2>" + "".join(cells)
