"""The first lines of a report: the verdict, the features that really moved, the key features,
the predictions and the review text, then the rule that decided. The terminal table and the HTML
page both open with them, so neither starts with a count that mixes noise and calendar growth.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

HEADLINE_ID = "churnfs-headline"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}"


def _moved(column: Mapping[str, Any]) -> str:
    means = ""
    if column.get("reference_mean") is not None:
        means = f"mean {_num(column['reference_mean'])} -> {_num(column['current_mean'])}, "
    label = f' "{column["label"]}"' if column.get("label") else ""
    return f"{column['column']}{label} ({means}PSI {_num(column['psi'])})"


def headline_lines(summary: Mapping[str, Any]) -> list[str]:
    """Plain-text lines, most important first, from a run's summary."""
    lines = []
    alerts = summary["alerts"]
    if alerts:
        lines.append(f"DRIFT (exit {summary['exit_code']}): " + "; ".join(alerts))
    else:
        lines.append("No alert (exit 0).")

    feats = summary["features"]
    judged = [c for c in feats["columns"] if c.get("counted", True)]
    moved = [c for c in judged if c["drifted"]]
    if moved:
        lines.append(
            f"Features that moved ({len(moved)} of {feats['counted']} judged): "
            + ", ".join(_moved(c) for c in moved)
        )
    else:
        lines.append(f"No feature moved (0 of {feats['counted']} judged).")

    keys = summary["key_features"]
    if keys["names"]:
        drifted = keys["drifted"]
        lines.append(
            f"Key features ({keys['rule']}): {', '.join(keys['names'])}; "
            + (f"drifted: {', '.join(drifted)}." if drifted else "none drifted.")
        )
    else:
        lines.append(f"Key features: none ({keys['rule']}).")

    pred = summary["predictions"]
    if pred.get("available"):
        verdict = "moved" if pred["drifted"] else "did not move"
        lines.append(f"Predicted churn probability {verdict}: {_moved(pred)} ({pred['current_note']}).")
    else:
        lines.append(f"Predicted churn probability not compared: {pred.get('note', '')}.")

    reviews = summary["reviews"]
    text_moved = [d for d in reviews["descriptors"] if d["drifted"]]
    emb = reviews["embedding"]
    parts = [_moved(d) for d in text_moved]
    if emb.get("available") and emb["drifted"]:
        parts.append(f"review_embedding (classifier ROC AUC {_num(emb['score'])})")
    lines.append("Review text moved: " + ", ".join(parts) if parts else "Review text: nothing moved.")

    rules = summary["rules"]
    lines.append(
        f"Rule: a column drifts when {rules['column_drift']}. Calendar features "
        f"({', '.join(rules['calendar_features'])}) grow with the as-of time by construction: "
        "they are shown last and never judged."
    )
    return lines


def with_headline(page: str, lines: Sequence[str]) -> str:
    """Evidently's HTML page with ``lines`` as its first block (after ``<body>``); the
    per-column widgets below it show the significance test alone, as the last line says."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines[1:])
    block = (
        f'<section id="{HEADLINE_ID}" style="font-family: sans-serif; margin: 16px 24px;">'
        f"<h2>{html.escape(lines[0]) if lines else ''}</h2><ul>{items}"
        "<li>Evidently's widgets below show each column's significance test alone; the verdicts "
        "above also need the PSI floor.</li></ul></section>"
    )
    head, sep, tail = page.partition("<body>")
    if not sep:
        return block + page
    return head + sep + block + tail
