"""Point-in-time training sets: label rows from ``churn_labels``, features from Feast only.

The entity frame is the validated labels (``user_id``, ``event_timestamp`` = the cutoff,
``churned``) of Feast's ``churn_labels`` view: the file the feature job writes from the
``target_table`` rows that passed validation (``transformations.labels``), never the raw table.
Its features come from one place, Feast's historical retrieval of the feature service
(``get_historical_features``), so the model trains on exactly what serving reads online. Every
joined row is then checked against the offline files (``training.leakage``). Above a cap, the label
rows of the cutoffs named for it are sampled per cutoff before the join (``training.sampling``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from churnfs.errors import MissingDataError, SchemaError
from training.design import ServiceFeature, service_features
from training.leakage import ViewSnapshotCheck, assert_features_before_cutoff, feature_snapshot_times
from training.progress import progress_bar
from training.sampling import SamplingReport, sample_per_cutoff

logger = logging.getLogger(__name__)

FEATURE_SERVICE = "churn_model_v1"
LABEL_VIEW = "churn_labels"
LABEL = "churned"
KEYS = ["user_id", "event_timestamp"]


def _read_raw(raw_dir: Path, name: str, columns: list[str]) -> pd.DataFrame:
    path = Path(raw_dir) / f"{name}.parquet"
    if not path.exists():
        raise MissingDataError(f"{path} does not exist: run `make data` first")
    frame = pq.read_table(path, columns=columns).to_pandas()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def read_label_rows(path: Path, cutoffs: Sequence[datetime]) -> pd.DataFrame:
    """Label rows (``user_id``, ``event_timestamp`` = cutoff, ``churned``) of a ``churn_labels``
    file at the given cutoffs, sorted by user then cutoff."""
    if not Path(path).is_file():
        raise MissingDataError(f"{LABEL_VIEW}: offline file {path} does not exist: run `make features` first")
    labels = pq.read_table(path, columns=[*KEYS, LABEL]).to_pandas()
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    wanted = pd.to_datetime(pd.Series(list(cutoffs)), utc=True)
    frame = labels[labels["event_timestamp"].isin(wanted)]
    if frame.empty:
        raise MissingDataError(f"{path} has no label rows at the cutoffs: run `make features` on this world")
    return frame.sort_values(KEYS, kind="stable").reset_index(drop=True)


def load_entity_frame(store: Any, cutoffs: Sequence[datetime]) -> pd.DataFrame:
    """The validated label rows at ``cutoffs``, read from the offline file behind Feast's
    ``churn_labels`` view."""
    return read_label_rows(offline_file(store, LABEL_VIEW), cutoffs)


def load_oracle(raw_dir: Path) -> pd.DataFrame:
    """The generator's true churn probability per label row: evaluation only."""
    return _read_raw(raw_dir, "_oracle", ["user_id", "event_timestamp", "churn_probability"])


@dataclass
class TrainingSet:
    """Label rows joined point in time with the feature service's features."""

    frame: pd.DataFrame
    features: list[ServiceFeature]
    feature_service: str
    checks: list[ViewSnapshotCheck] = field(default_factory=list)
    snapshot_times: pd.DataFrame | None = None
    seconds: float = 0.0
    sampling: SamplingReport | None = None
    """Which cutoffs' label rows were sampled before the join (None: built without a cap)."""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def rows_at(self, cutoffs: Sequence[datetime]) -> pd.DataFrame:
        wanted = pd.to_datetime(pd.Series(list(cutoffs)), utc=True)
        return self.frame[self.frame["event_timestamp"].isin(wanted)].reset_index(drop=True)


RETRIEVAL_CHUNK_ROWS = 100_000
"""Label rows joined by one ``get_historical_features`` call: a cutoff with more is joined in
slices of users (a million users' test cutoff holds 643,000 rows; joined at once, its join alone
took more memory than the rest of training)."""


def retrieve_features(
    store: Any, entity_frame: pd.DataFrame, feature_service: Any, show_progress: bool = False
) -> pd.DataFrame:
    """``get_historical_features`` of the feature service, one cutoff at a time and at most
    ``RETRIEVAL_CHUNK_ROWS`` label rows per call (bounded memory; every row is joined on its own,
    so the slices give the rows one call would), rows sorted by cutoff and user."""
    parts = []
    cutoffs = sorted(entity_frame["event_timestamp"].unique())
    rows_per_cutoff = entity_frame["event_timestamp"].value_counts()
    calls = sum(-(-int(n) // RETRIEVAL_CHUNK_ROWS) for n in rows_per_cutoff)
    with progress_bar(show_progress) as progress:
        task = progress.add_task("point-in-time join", total=calls)
        for cutoff in cutoffs:
            at_cutoff = entity_frame[entity_frame["event_timestamp"] == cutoff]
            for start in range(0, len(at_cutoff), RETRIEVAL_CHUNK_ROWS):
                entities = at_cutoff.iloc[start : start + RETRIEVAL_CHUNK_ROWS]
                job = store.get_historical_features(entity_df=entities, features=feature_service)
                parts.append(job.to_df())
                progress.advance(task)
    joined = pd.concat(parts, ignore_index=True)
    joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
    joined = joined.sort_values(KEYS, kind="stable").reset_index(drop=True)
    if len(joined) != len(entity_frame):
        raise SchemaError(
            f"the point-in-time join returned {len(joined)} rows for {len(entity_frame)} label rows: "
            "check the feature views' entities"
        )
    return joined


def offline_file(store: Any, view: str) -> Path:
    """The offline parquet file behind a feature view, as the Feast registry declares it."""
    source = store.get_feature_view(view).batch_source
    path = Path(getattr(source, "path", ""))
    if not path.is_file():
        raise MissingDataError(f"{view}: offline file {path} does not exist: run `make features` first")
    return path


def view_sources(store: Any, features: Sequence[ServiceFeature]) -> dict[str, Path]:
    """The offline file behind each feature view of the service."""
    return {view: offline_file(store, view) for view in dict.fromkeys(f.view for f in features)}


def check_point_in_time(
    store: Any, joined: pd.DataFrame, features: Sequence[ServiceFeature]
) -> tuple[list[ViewSnapshotCheck], pd.DataFrame]:
    """Match every joined row to the offline snapshots it came from and assert they are as of
    the cutoff or earlier (``training.leakage``). Vectors are covered by the scalar features of
    the same snapshot."""
    files = view_sources(store, features)
    scalars = {view: [f.name for f in features if f.view == view and f.kind != "vector"] for view in files}
    times = feature_snapshot_times(joined, files, scalars)
    checks = assert_features_before_cutoff(joined, times, [v for v in files if scalars[v]])
    return checks, times


def build_training_set(
    store: Any,
    cutoffs: Sequence[datetime],
    feature_service_name: str = FEATURE_SERVICE,
    show_progress: bool = False,
    max_rows_per_cutoff: int = 0,
    sample_seed: int = 0,
    sampled_cutoffs: Sequence[datetime] | None = None,
) -> TrainingSet:
    """Validated label rows at ``cutoffs``, features from Feast's historical retrieval, checked
    point in time. With ``max_rows_per_cutoff``, each of ``sampled_cutoffs`` (default: all) keeps
    at most that many label rows, a stratified sample seeded by ``sample_seed``, drawn before the
    join (``training.sampling``); 0 keeps every row."""
    began = time.perf_counter()
    feature_service = store.get_feature_service(feature_service_name)
    features = service_features(feature_service)
    entities, sampling = sample_per_cutoff(
        load_entity_frame(store, cutoffs), max_rows_per_cutoff, sample_seed, sampled_cutoffs
    )
    joined = retrieve_features(store, entities, feature_service, show_progress)
    checks, times = check_point_in_time(store, joined, features)
    seconds = time.perf_counter() - began
    logger.info("training set: %d rows, %d features in %.1f s", len(joined), len(features), seconds)
    return TrainingSet(
        frame=joined,
        features=features,
        feature_service=feature_service_name,
        checks=checks,
        snapshot_times=times,
        seconds=seconds,
        sampling=sampling,
    )
