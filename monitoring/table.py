"""The short terminal table ``churnfs monitor`` prints: verdicts first, details in the files."""

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


def render_summary_table(summary: Mapping[str, Any], top: int = TOP_FEATURES) -> Group:
    """A rich renderable: one line per check (features, predictions, labels, reviews,
    freshness), then the ``top`` most drifted features, then the alerts."""
    checks = Table(title="monitoring", title_justify="left")
    for col in ("check", "statistic", "reference", "current", "score", "threshold", "verdict"):
        checks.add_column(col)
    feats = summary["features"]
    checks.add_row(
        "features",
        "share drifted",
        "",
        f"{len(feats['drifted'])}/{feats['counted']}",
        _fmt(feats["drift_share"]),
        _fmt(summary["rules"]["drift_share_threshold"]),
        _verdict(feats["drift_share"] >= summary["rules"]["drift_share_threshold"]),
    )
    pred = summary["predictions"]
    if pred.get("available"):
        checks.add_row(
            "predicted churn",
            pred["method"],
            _fmt(pred["reference_mean"]),
            _fmt(pred["current_mean"]),
            _fmt(pred["score"]),
            _fmt(pred["threshold"]),
            _verdict(pred["drifted"]),
        )
    else:
        checks.add_row("predicted churn", "", "", "", "", "", _verdict(None))
    labels = summary["labels"]
    label_drift = labels.get("drift")
    checks.add_row(
        "churn rate (labels)",
        label_drift["method"] if label_drift else "",
        _fmt(labels["reference_churn_rate"]),
        _fmt(labels["current_churn_rate"]),
        _fmt(label_drift["score"]) if label_drift else "",
        _fmt(label_drift["threshold"]) if label_drift else "",
        _verdict(label_drift["drifted"] if label_drift else None),
    )
    reviews = summary["reviews"]
    ref_s, cur_s = reviews["reference_sentiment"], reviews["current_sentiment"]
    checks.add_row("review sentiment (mean)", "", _fmt(ref_s["mean"]), _fmt(cur_s["mean"]), "", "", "")
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
        checks.add_row(
            d["column"],
            d["method"],
            _fmt(d["reference_mean"]),
            _fmt(d["current_mean"]),
            _fmt(d["score"]),
            _fmt(d["threshold"]),
            _verdict(d["drifted"]),
        )
    emb = reviews["embedding"]
    if emb.get("available"):
        checks.add_row(
            "review_embedding",
            "classifier AUC",
            "",
            "",
            _fmt(emb["score"]),
            _fmt(emb["threshold"]),
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

    top_table = Table(title=f"most drifted features (of {feats['monitored']})", title_justify="left")
    for col in ("feature", "statistic", "score", "threshold", "psi", "verdict"):
        top_table.add_column(col)
    for f in feats["columns"][:top]:
        key = " *" if f["column"] in summary["rules"]["key_features"] else ""
        key += "" if f.get("counted", True) else " (calendar)"
        top_table.add_row(
            Text(f"{f['column']}{key}"),
            f"{f['method']} ({f['statistic']})",
            _fmt(f["score"]),
            _fmt(f["threshold"]),
            _fmt(f["psi"]),
            _verdict(f["drifted"]),
        )

    alerts = summary.get("alerts", [])
    lines = [Text("* key feature; (calendar): grows with the as-of time, not in the share", style="dim")]
    lines += [Text(f"ALERT: {a}", style="bold red") for a in alerts] or [Text("no alert", style="green")]
    lines += [Text(f"note: {n}", style="dim") for n in summary.get("notes", [])]
    if "html_path" in summary:
        lines.append(Text(f"report: {summary['html_path']}"))
        lines.append(Text(f"summary: {summary['json_path']}"))
    return Group(checks, top_table, *lines)
