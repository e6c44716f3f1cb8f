"""``churnfs monitor``: compare a reference window with the current one and say whether the
model's world has moved.

``run_monitoring`` is the I/O edge (read the windows, the prediction log, the champion; write
the HTML page and the JSON summary). ``compare_windows`` does the comparison on frames already
in memory, so a test can hand it any two windows, such as two random halves of one period.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently.core.report import Snapshot
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from churnfs.errors import MissingDataError, SchemaError
from churnfs.io import atomic_path, write_text_atomic
from churnfs.settings import Settings
from churnfs.world import load_world_spec
from monitoring import drift, text
from monitoring.config import MonitoringConfig
from monitoring.headline import headline_lines, with_headline
from monitoring.key_features import NONE as NO_KEY_FEATURES
from monitoring.key_features import base_feature, choose_key_features, key_feature_verdicts
from monitoring.trend import trend_section, weekly_sentiment, with_trend
from monitoring.windows import (
    FEATURE_HORIZON,
    Window,
    held_out_window,
    latest_snapshot_time,
    load_prediction_log,
    load_reviews,
    load_snapshots,
    resolve_window,
)

logger = logging.getLogger(__name__)

DRIFT_EXIT_CODE = 3
"""Exit code of a run that raised an alert (1 and 2 are the CLI's error codes)."""

EVENT_TYPES = ("page_view", "search", "add_to_cart", "purchase", "wishlist", "support_contact")
VECTOR_LABELS = {"categorical_event_vector": EVENT_TYPES}
EMBEDDING = "review_embedding"
PREDICTION = "churn_probability"
LABEL = "churned"
REVIEW_SENTIMENT = "sentiment"
"""The per-review sentiment column `_load_window` adds to a window's reviews."""
NON_FEATURES = ("user_id", "event_timestamp", "created_timestamp", LABEL)
REVIEW_FEATURES = (
    "total_reviews",
    "avg_rating",
    "avg_helpful_ratio",
    "avg_text_length",
    "last_review_days",
    "sentiment_score",
    "recent_sentiment",
    "review_embedding",
    "topic_vector",
)
"""Review features that describe a reviewer: ``user_review_features`` and the embedding of the
event-sourced ``user_review_embeddings``, joined as of each snapshot (``has_reviews`` is left
out: it is the share of reviewers itself)."""


@dataclass
class WindowData:
    """Everything one side of the comparison holds."""

    description: str
    snapshots: pd.DataFrame
    reviews: pd.DataFrame
    predictions: pd.Series | None = None
    prediction_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MonitoringResult:
    """What a run produced: the exit code for a scheduler, the summary (also written as JSON)
    and the paths of the Evidently HTML page and the JSON file."""

    exit_code: int
    summary: dict[str, Any]
    html_path: Path
    json_path: Path


def feature_frame(snapshots: pd.DataFrame, *, recent_reviewers_only: bool) -> pd.DataFrame:
    """The monitored feature columns of snapshot rows: short vectors split into components,
    categories as strings, and (optionally) review features blanked for users without a review
    in the 30 days before the as-of time, so the review features compare recent reviewers."""
    frame = snapshots.drop(columns=[c for c in (*NON_FEATURES, EMBEDDING) if c in snapshots.columns])
    if recent_reviewers_only and {"has_reviews", "last_review_days"} <= set(snapshots.columns):
        recent = snapshots["has_reviews"].astype(bool) & (
            snapshots["last_review_days"] < FEATURE_HORIZON.days
        )
        for col in REVIEW_FEATURES:
            if col in frame.columns:
                frame[col] = frame[col].where(recent, None if frame[col].dtype == object else np.nan)
    frame = drift.expand_vectors(frame, VECTOR_LABELS)
    for col in frame.columns:
        if drift.column_kind(frame[col]) == drift.CATEGORICAL:
            frame[col] = drift.as_categorical(frame[col])
    return frame


def recent_reviewer_embeddings(snapshots: pd.DataFrame, *, recent_reviewers_only: bool) -> pd.DataFrame:
    """``review_embedding`` of the rows whose user has reviewed (recently, if asked)."""
    if EMBEDDING not in snapshots.columns:
        return pd.DataFrame()
    rows = snapshots
    if recent_reviewers_only and "last_review_days" in snapshots.columns:
        rows = snapshots[snapshots["last_review_days"] < FEATURE_HORIZON.days]
    return text.embedding_matrix(rows[EMBEDDING])


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def compare_windows(
    reference: WindowData,
    current: WindowData,
    config: MonitoringConfig,
    importance: Mapping[str, float] | None = None,
) -> tuple[dict[str, Any], Snapshot]:
    """Compare two windows: feature drift, output and label drift, review text and embedding
    drift. ``importance`` (the champion's, per input feature) ranks the key features when
    ``Settings`` names none. Returns the summary (without freshness or paths) and Evidently's
    snapshot of the per-column page.

    Raises:
        MissingDataError: the current window holds no snapshot rows.
        SchemaError: the reference lacks a column the current window has.
    """
    if current.snapshots.empty:
        raise MissingDataError(
            f"the current window ({current.description}) holds no snapshot rows of active users: "
            "build features up to it (`make features`) or pick another window"
        )
    if reference.snapshots.empty:
        raise MissingDataError(f"the reference window ({reference.description}) holds no snapshot rows")
    missing = sorted(set(current.snapshots.columns) - set(reference.snapshots.columns))
    if missing:
        raise SchemaError(
            f"the reference window lacks column(s) {', '.join(missing)} that the current window has: "
            "rebuild the offline store (`make features`) so both windows share one schema"
        )
    recent_only = config.monitoring_recent_reviewers_only
    calendar = config.monitoring_calendar_features
    ref_features = feature_frame(reference.snapshots, recent_reviewers_only=recent_only)
    cur_features = feature_frame(current.snapshots, recent_reviewers_only=recent_only)
    feature_columns = [c for c in ref_features.columns if c in cur_features.columns]
    numerical = [c for c in feature_columns if drift.column_kind(ref_features[c]) == drift.NUMERICAL]
    categorical = [c for c in feature_columns if c not in numerical]
    parts = [(ref_features[feature_columns], cur_features[feature_columns])]

    # Review text: the vocabulary comes from half the reference reviews, the reference's own
    # out-of-vocabulary share from the other half, so it is not zero by construction.
    ref_reviews, cur_reviews = reference.reviews, current.reviews
    vocab_mask = ref_reviews["review_id"] % 2 == 0 if not ref_reviews.empty else pd.Series(dtype=bool)
    vocabulary = (
        text.build_vocabulary(ref_reviews.loc[vocab_mask, "review_text"]) if len(ref_reviews) else frozenset()
    )

    def sentiment_of(reviews: pd.DataFrame) -> pd.Series | None:
        return reviews[REVIEW_SENTIMENT] if REVIEW_SENTIMENT in reviews.columns else None

    ref_described = (
        text.review_descriptors(
            ref_reviews.loc[~vocab_mask, "review_text"],
            vocabulary,
            sentiment_of(ref_reviews.loc[~vocab_mask]),
        )
        if len(ref_reviews)
        else pd.DataFrame(columns=text.DESCRIPTOR_COLUMNS)
    )
    cur_described = (
        text.review_descriptors(cur_reviews["review_text"], vocabulary, sentiment_of(cur_reviews))
        if len(cur_reviews)
        else pd.DataFrame(columns=text.DESCRIPTOR_COLUMNS)
    )
    parts.append((ref_described.astype(float), cur_described.astype(float)))
    numerical += list(text.DESCRIPTOR_COLUMNS)

    notes: list[str] = []
    has_predictions = reference.predictions is not None and current.predictions is not None
    if has_predictions:
        assert reference.predictions is not None and current.predictions is not None
        parts.append(
            (
                reference.predictions.rename(PREDICTION).to_frame(),
                current.predictions.rename(PREDICTION).to_frame(),
            )
        )
        numerical.append(PREDICTION)
    ref_labels = (
        reference.snapshots[LABEL].dropna() if LABEL in reference.snapshots else pd.Series(dtype=float)
    )
    cur_labels = current.snapshots[LABEL].dropna() if LABEL in current.snapshots else pd.Series(dtype=float)
    if len(ref_labels) and len(cur_labels):
        parts.append(
            (
                drift.as_categorical(ref_labels.astype(int)).to_frame(LABEL),
                drift.as_categorical(cur_labels.astype(int)).to_frame(LABEL),
            )
        )
        categorical.append(LABEL)

    ref_all, cur_all = drift.stack(parts)
    inputs = drift.DriftInputs(ref_all, cur_all, numerical, categorical)
    verdicts = drift.compare_columns(inputs, config)
    by_column = {v.column: v for v in verdicts}

    embeddings = text.embedding_drift(
        recent_reviewer_embeddings(reference.snapshots, recent_reviewers_only=recent_only),
        recent_reviewer_embeddings(current.snapshots, recent_reviewers_only=recent_only),
        threshold=config.monitoring_embedding_auc_threshold,
        max_rows=config.monitoring_max_reviews // 4,
        seed=config.monitoring_seed,
    )

    features = sorted((by_column[c] for c in feature_columns if c in by_column), key=_severity)
    counted = [f for f in features if not is_calendar_feature(f.column, calendar)]
    drifted = [f.column for f in counted if f.drifted]
    share = len(drifted) / len(counted) if counted else 0.0
    if EMBEDDING not in reference.snapshots.columns:
        notes.append(
            "no review feature group in the offline store: review features and embeddings not compared"
        )
    keys = choose_key_features(
        config.monitoring_key_features,
        importance,
        count=config.monitoring_key_feature_count,
        never=calendar,
    )
    if keys.source == NO_KEY_FEATURES:
        notes.append(f"no key features: {keys.rule}")
    judged = {c: v.drifted for c, v in by_column.items() if not is_calendar_feature(c, calendar)}
    if embeddings.get("available"):
        judged[EMBEDDING] = bool(embeddings["drifted"])
    key_verdicts = key_feature_verdicts(keys.names, judged)
    for key, verdict in key_verdicts.items():
        if verdict is None:
            notes.append(f"key feature {key} was not checked: this run has no data for it")

    alerts = []
    if counted and share >= config.drift_share_threshold:
        alerts.append(
            f"{share:.0%} of {len(counted)} features drifted (threshold {config.drift_share_threshold:.0%})"
        )
    key_drifted = [k for k, verdict in key_verdicts.items() if verdict]
    for key in key_drifted:
        moved = [by_column[c] for c in judged if judged[c] and base_feature(c) == key and c in by_column]
        detail = "; ".join(_describe(v) for v in moved) or (
            f"classifier ROC AUC {embeddings.get('score', float('nan')):.3g}"
        )
        alerts.append(f"key feature {key} drifted ({detail})")
    output = by_column.get(PREDICTION)
    output_alert = config.monitoring_alert_on_output_drift and PREDICTION not in key_drifted
    if output is not None and output.drifted and output_alert:
        alerts.append(f"predicted churn probability drifted ({_describe(output)})")
    sentiment = by_column.get(text.SENTIMENT)
    if sentiment is not None and sentiment.drifted and config.monitoring_alert_on_review_sentiment:
        alerts.append(f"review sentiment drifted ({_describe(sentiment)})")
    if not has_predictions:
        notes.append(reference.prediction_note or current.prediction_note or "no predictions to compare")

    labels: dict[str, Any] = {
        "reference_rows": len(ref_labels),
        "current_rows": len(cur_labels),
        "reference_churn_rate": float(ref_labels.mean()) if len(ref_labels) else None,
        "current_churn_rate": float(cur_labels.mean()) if len(cur_labels) else None,
    }
    if LABEL in by_column:
        labels["drift"] = by_column[LABEL].as_dict()
    else:
        labels["note"] = "no labels for the current window yet: a label needs the 30 days after its cutoff"
    for side, data in (("reference", reference), ("current", current)):
        if "auc" in data.extra:
            labels[f"{side}_roc_auc"] = data.extra["auc"]

    others = [by_column[c] for c in (PREDICTION, *text.DESCRIPTOR_COLUMNS, LABEL) if c in by_column]
    page_order = [
        *(f for f in counted if f.drifted),
        *others,
        *(f for f in counted if not f.drifted),
        *(f for f in features if f not in counted),
    ]
    snapshot = drift.drift_page(inputs, page_order)

    summary: dict[str, Any] = {
        "reference": {
            "window": reference.description,
            "snapshot_rows": len(reference.snapshots),
            "reviews": len(reference.reviews),
        },
        "current": {
            "window": current.description,
            "snapshot_rows": len(current.snapshots),
            "reviews": len(current.reviews),
        },
        "rules": _rules(config),
        "key_features": keys.as_dict() | {"drifted": key_drifted},
        "features": {
            "monitored": len(features),
            "counted": len(counted),
            "drifted": drifted,
            "calendar_drifted": [f.column for f in features if f.drifted and f not in counted],
            "drift_share": share,
            "key_features_drifted": key_drifted,
            "columns": [f.as_dict() | {"counted": f in counted} for f in features],
        },
        "predictions": (
            {
                "available": True,
                "reference_note": reference.prediction_note,
                "current_note": current.prediction_note,
                **by_column[PREDICTION].as_dict(),
            }
            if has_predictions and PREDICTION in by_column
            else {"available": False, "note": notes[-1] if notes else ""}
        ),
        "labels": labels,
        "reviews": {
            "reference_sentiment": text.sentiment_summary(
                ref_described[text.SENTIMENT], config.monitoring_negative_sentiment
            ),
            "current_sentiment": text.sentiment_summary(
                cur_described[text.SENTIMENT], config.monitoring_negative_sentiment
            ),
            "vocabulary_size": len(vocabulary),
            "descriptors": [by_column[c].as_dict() for c in text.DESCRIPTOR_COLUMNS if c in by_column],
            "embedding": embeddings,
        },
        "alerts": alerts,
        "notes": notes,
        "exit_code": DRIFT_EXIT_CODE if alerts else 0,
    }
    summary["headline"] = headline_lines(summary)
    return summary, snapshot


def is_calendar_feature(column: str, calendar: Sequence[str]) -> bool:
    """Whether ``column`` (or the vector it is a component of) is a calendar feature."""
    return base_feature(column) in calendar


def _describe(v: drift.ColumnDrift) -> str:
    return f"PSI {v.psi:.3g} >= {v.psi_floor:.3g}, {v.test} p {v.p_value:.3g} <= {v.alpha:.3g}"


def _severity(v: drift.ColumnDrift) -> tuple[int, float, str]:
    """Drifted first, then by effect size (PSI), largest first."""
    size = v.psi if v.psi is not None and math.isfinite(v.psi) else -1.0
    return (0 if v.drifted else 1, -size, v.column)


def _rules(config: MonitoringConfig) -> dict[str, Any]:
    return {
        "column_drift": (
            f"{config.monitoring_numerical_test} (numerical) or {config.monitoring_categorical_test} "
            f"(categorical) p <= {config.monitoring_p_value} / columns tested, "
            f"and PSI >= {config.monitoring_psi_floor}"
        ),
        "p_value": config.monitoring_p_value,
        "psi_floor": config.monitoring_psi_floor,
        "psi_bins": config.monitoring_psi_bins,
        "drift_share_threshold": config.drift_share_threshold,
        "calendar_features": list(config.monitoring_calendar_features),
        "warmup_days": config.monitoring_warmup_days,
        "key_features": list(config.monitoring_key_features),
        "key_feature_count": config.monitoring_key_feature_count,
        "alert_on_output_drift": config.monitoring_alert_on_output_drift,
        "alert_on_review_sentiment": config.monitoring_alert_on_review_sentiment,
        "embedding": f"domain classifier ROC AUC > {config.monitoring_embedding_auc_threshold}",
        "active_only": config.monitoring_active_only,
        "recent_reviewers_only": config.monitoring_recent_reviewers_only,
        "max_rows": config.monitoring_max_rows,
        "max_reviews": config.monitoring_max_reviews,
    }


def _load_snapshots(settings: Settings, window: Window, config: MonitoringConfig) -> pd.DataFrame:
    return load_snapshots(
        settings.offline_store_dir,
        window,
        max_rows=config.monitoring_max_rows,
        seed=config.monitoring_seed,
        active_only=config.monitoring_active_only,
    )


def _load_window(settings: Settings, window: Window, config: MonitoringConfig) -> WindowData:
    snapshots = _load_snapshots(settings, window, config)
    reviews = load_reviews(
        settings.raw_dir, window, max_rows=config.monitoring_max_reviews, seed=config.monitoring_seed
    )
    return WindowData(window.describe(), snapshots, _with_sentiment(settings, reviews))


def label_topic_columns(summary: dict[str, Any], settings: Settings) -> bool:
    """Name the ``topic_vector[i]`` columns of ``summary`` with the topic model's labels
    (``transformations.topics``): a ``label`` on each such column and ``reviews.topics``. False
    when the model has no labels."""
    from transformations.topics import load_topic_model

    model = load_topic_model(settings, settings.embedding_model)
    topics = model.labels.get("topics") if model is not None and model.labels is not None else None
    if not isinstance(topics, list):
        return False
    summary["reviews"]["topics"] = [
        {"column": f"topic_vector[{t['topic']}]", "label": t["label"], "words": t["words"]} for t in topics
    ]
    by_column = {t["column"]: t["label"] for t in summary["reviews"]["topics"]}
    for column in summary["features"]["columns"]:
        if column["column"] in by_column:
            column["label"] = by_column[column["column"]]
    return True


def _with_sentiment(settings: Settings, reviews: pd.DataFrame) -> pd.DataFrame:
    """``reviews`` with each one's score by the review features' own method (SENTIMENT_METHOD),
    from the embedding cache the feature job filled (texts not in it are embedded and added)."""
    if len(reviews):
        from transformations.embeddings import review_vectors

        reviews[REVIEW_SENTIMENT] = review_vectors(reviews, settings, show_progress=False).sentiment
    return reviews


def _weekly_trend(settings: Settings, ref: Window, cur: Window, config: MonitoringConfig) -> dict[str, Any]:
    """The weekly sentiment trend from the earlier window's first review to the later one's end."""
    start, end = min(ref.reviews_from, cur.reviews_from), max(ref.until, cur.until)
    span = Window("trend", start, end, start)
    reviews = load_reviews(
        settings.raw_dir, span, max_rows=config.monitoring_trend_max_reviews, seed=config.monitoring_seed
    )
    return weekly_sentiment(
        _with_sentiment(settings, reviews),
        config.monitoring_negative_sentiment,
        reference=(ref.reviews_from, ref.until),
        current=(cur.reviews_from, cur.until),
    )


def _score_labelled(model: Any, data: WindowData) -> None:
    from monitoring.predictions import score

    if LABEL not in data.snapshots.columns:
        return
    labelled = data.snapshots[data.snapshots[LABEL].notna()]
    if labelled.empty:
        return
    data.extra["auc"] = _roc_auc(labelled[LABEL].to_numpy(dtype=int), score(model, labelled))


def run_monitoring(
    settings: Settings,
    reference: str = "training",
    current: str = "latest",
    show_progress: bool = True,
) -> MonitoringResult:
    """Compare the ``reference`` window (default: the training period) with ``current``
    (default: the newest snapshot), both scored by the champion, whose feature importances name
    the key features; write the HTML page (headline, then Evidently's per-column widgets) and the
    JSON summary under ``settings.reports_dir``. The prediction log is summarised.

    Raises:
        MissingDataError: no world, offline store or prediction log, or an empty window.
        SchemaError: an input lacks a column it needs.
        InvalidInputError: an unknown window name.
    """
    from monitoring.freshness import check_freshness
    from monitoring.predictions import feature_importance, load_champion, score

    config = MonitoringConfig.from_settings(settings)
    world = load_world_spec(settings.raw_dir)
    latest = latest_snapshot_time(settings.offline_store_dir)
    ref_window = resolve_window(reference, world, latest, config.monitoring_warmup_days)
    cur_window = resolve_window(current, world, latest, config.monitoring_warmup_days)

    steps = [
        "reference window",
        "current window",
        "prediction log",
        "champion scores",
        "drift report",
        "freshness",
        "write",
    ]
    with Progress(
        TextColumn("[bold]monitor[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as progress:
        task = progress.add_task(steps[0], total=len(steps))

        def advance(step: int) -> None:
            progress.update(task, completed=step, description=steps[min(step, len(steps) - 1)])

        ref_data = _load_window(settings, ref_window, config)
        advance(1)
        cur_data = _load_window(settings, cur_window, config)
        if cur_data.snapshots.empty:
            raise MissingDataError(
                f"the current window ({cur_data.description}) holds no snapshot rows of active users: "
                "build features up to it (`make features`) or pick another window"
            )
        advance(2)
        log = load_prediction_log(settings.prediction_log_dir)
        versions = sorted(log["model_version"].dropna().astype(str).unique().tolist())
        advance(3)
        # Output drift compares like with like: the same model over both windows' sampled rows.
        # The log holds whichever users serving was asked about (the demo: the five most active),
        # not a sample of the current population.
        model, note = load_champion(settings)
        importance = None
        if model is not None:
            # The output's reference is the champion's scores on its held-out test period: the
            # distribution it was accepted on. Its scores on the training window are in-sample
            # (rows it was fitted on) and from earlier in the calendar, so they are not like with like.
            held_out = held_out_window(world, latest)
            held = _load_snapshots(settings, held_out, config) if held_out is not None else None
            if held_out is not None and held is not None and not held.empty:
                ref_data.predictions = pd.Series(score(model, held), dtype=float)
                ref_data.prediction_note = f"{note}, held-out test period ({held_out.describe()})"
            else:
                ref_data.predictions = pd.Series(score(model, ref_data.snapshots), dtype=float)
                ref_data.prediction_note = f"{note}, reference window (no held-out test period before it)"
            cur_data.predictions = pd.Series(score(model, cur_data.snapshots), dtype=float)
            cur_data.prediction_note = f"{note}, current window"
            importance = feature_importance(
                model,
                ref_data.snapshots,
                rows=config.monitoring_importance_rows,
                seed=config.monitoring_seed,
            )
            _score_labelled(model, ref_data)
            _score_labelled(model, cur_data)
        else:
            ref_data.prediction_note = note
        advance(4)
        summary, snapshot = compare_windows(ref_data, cur_data, config, importance)
        summary["reviews"]["weekly_sentiment"] = _weekly_trend(settings, ref_window, cur_window, config)
        if label_topic_columns(summary, settings):
            summary["headline"] = headline_lines(summary)
        advance(5)
        summary["freshness"] = check_freshness(settings, _lookup_users(cur_data.snapshots), latest)
        advance(6)
        now = datetime.now(UTC)
        summary["generated_at"] = now.isoformat()
        summary["prediction_log"] = {
            "users": len(log),
            "model_versions": versions,
            "sources": log["source"].value_counts().to_dict(),
            "mean_churn_probability": float(log[PREDICTION].astype(float).mean()),
        }
        html_path, json_path = _report_paths(settings.reports_dir, now)
        summary["html_path"], summary["json_path"] = str(html_path), str(json_path)
        with atomic_path(html_path) as tmp:
            snapshot.save_html(str(tmp))
            page = tmp.read_text(encoding="utf-8")
            page = with_headline(page, summary["headline"])
            page = with_trend(page, trend_section(summary["reviews"]["weekly_sentiment"]))
            tmp.write_text(page, encoding="utf-8")
        write_text_atomic(json.dumps(summary, indent=2, default=str), json_path)
        advance(7)
    logger.info("monitoring report written to %s", html_path)
    return MonitoringResult(summary["exit_code"], summary, html_path, json_path)


def _lookup_users(snapshots: pd.DataFrame, limit: int = 200) -> Sequence[int]:
    latest = snapshots[snapshots["event_timestamp"] == snapshots["event_timestamp"].max()]
    return latest["user_id"].drop_duplicates().head(limit).astype(int).tolist()


def _report_paths(reports_dir: Path, now: datetime) -> tuple[Path, Path]:
    stem = f"monitoring-{now:%Y%m%dT%H%M%SZ}"
    n = 1
    while (reports_dir / f"{stem}.json").exists():
        n += 1
        stem = f"monitoring-{now:%Y%m%dT%H%M%SZ}-{n}"
    return reports_dir / f"{stem}.html", reports_dir / f"{stem}.json"
