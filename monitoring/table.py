"""The short terminal table ``churnfs monitor`` prints: the headline first (the verdict and the
features that really moved), then one line per check, details in the files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

TOP_FEATURES = 8


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _verdict(drifted: bool | None) -> Text:
    if drifted is None:
        return Text("n/a", style="dim")
    return Text("DRIFT", style="bold red") if drifted else Text("ok", style="green")


def _row(name: str, d: Mapping[str, Any]) -> list[Any]:
    """A check's cells: test, means, PSI (the effect size) and p-value against their bars."""
    return [
        name,
        d["test"],
        _fmt(d["reference_mean"]),
        _fmt(d["current_mean"]),
        f"{_fmt(d['psi'])} / {_fmt(d['psi_floor'])}",
        f"{_fmt(d['p_value'])} / {_fmt(d['alpha'])}",
        _verdict(d["drifted"]),
    ]


def render_summary_table(summary: Mapping[str, Any], top: int = TOP_FEATURES) -> Group:
    """A rich renderable: the headline, one line per check (features, predictions, labels,
    reviews, freshness), the ``top`` most drifted judged features, then the notes."""
    headline = summary.get("headline", [])
    lines: list[Text] = []
    if headline:
        lines.append(Text(headline[0], style="bold red" if summary["alerts"] else "bold green"))
        lines += [Text(line) for line in headline[1:-1]]
    checks = Table(title="monitoring", title_justify="left")
    for col in ("check", "test", "reference", "current", "PSI / floor", "p / alpha", "verdict"):
        checks.add_column(col)
    feats = summary["features"]
    threshold = summary["rules"]["drift_share_threshold"]
    checks.add_row(
        "features",
        "share drifted",
        "",
        f"{len(feats['drifted'])}/{feats['counted']}",
        "",
        f"{_fmt(feats['drift_share'])} / {_fmt(threshold)}",
        _verdict(feats["drift_share"] >= threshold),
    )
    pred = summary["predictions"]
    if pred.get("available"):
        checks.add_row(*_row("predicted churn", pred))
    else:
        checks.add_row("predicted churn", "", "", "", "", "", _verdict(None))
    labels = summary["labels"]
    label_drift = labels.get("drift")
    checks.add_row(
        "churn rate (labels)",
        label_drift["test"] if label_drift else "",
        _fmt(labels["reference_churn_rate"]),
        _fmt(labels["current_churn_rate"]),
        f"{_fmt(label_drift['psi'])} / {_fmt(label_drift['psi_floor'])}" if label_drift else "",
        f"{_fmt(label_drift['p_value'])} / {_fmt(label_drift['alpha'])}" if label_drift else "",
        _verdict(label_drift["drifted"] if label_drift else None),
    )
    reviews = summary["reviews"]
    ref_s, cur_s = reviews["reference_sentiment"], reviews["current_sentiment"]
    checks.add_row(
        "negative reviews (share)",
        "",
        _fmt(ref_s["negative_share"]),
        _fmt(cur_s["negative_share"]),
        "",
        "",
        "",
    )
    for d in reviews["descriptors"]:
        checks.add_row(*_row(d["column"], d))
    trend = reviews.get("weekly_sentiment")
    if trend:
        band = trend["band"]["mean"]
        current = [w["mean"] for w in trend["weeks"] if w["current"]]
        checks.add_row(
            "weekly mean sentiment",
            "reference band",
            f"{_fmt(band['low'])} to {_fmt(band['high'])}" if band else "",
            f"lowest {_fmt(min(current))}" if current else "",
            "",
            "",
            f"{trend['current_weeks_outside_band']} current week(s) outside",
        )
    emb = reviews["embedding"]
    if emb.get("available"):
        checks.add_row(
            "review_embedding",
            "classifier AUC",
            "",
            _fmt(emb["score"]),
            "",
            f"> {_fmt(emb['threshold'])}",
            _verdict(emb["drifted"]),
        )
    else:
        checks.add_row("review_embedding", "", "", "", "", "", _verdict(None))
    fresh = summary.get("freshness", {})
    if fresh.get("available"):
        for view in fresh["views"]:
            checks.add_row(
                f"freshness {view['feature_view']}",
                "age h / ttl h",
                "",
                _fmt(view["age_hours"]),
                "",
                _fmt(view["ttl_hours"]),
                Text("STALE", style="bold red") if view["stale"] else Text("ok", style="green"),
            )
    else:
        checks.add_row("freshness", "", "", "", "", "", Text("n/a", style="dim"))

    judged = [f for f in feats["columns"] if f.get("counted", True)]
    top_table = Table(
        title=f"features by effect size (of {feats['counted']} judged; calendar features left out)",
        title_justify="left",
    )
    for col in ("feature", "test", "reference", "current", "PSI / floor", "p / alpha", "verdict"):
        top_table.add_column(col)
    keys = set(summary.get("key_features", {}).get("names", []))
    for f in judged[:top]:
        mark = " *" if f["column"].split("[", 1)[0] in keys else ""
        label = f' "{f["label"]}"' if f.get("label") else ""
        top_table.add_row(*_row(f"{f['column']}{label}{mark}", f))

    tail = [Text("* key feature", style="dim")]
    tail += [Text(f"ALERT: {a}", style="bold red") for a in summary.get("alerts", [])]
    tail += [Text(f"note: {n}", style="dim") for n in summary.get("notes", [])]
    if headline:
        tail.append(Text(headline[-1], style="dim"))
    if "html_path" in summary:
        tail.append(Text(f"report: {summary['html_path']}"))
        tail.append(Text(f"summary: {summary['json_path']}"))
    return Group(*lines, checks, top_table, *tail)
