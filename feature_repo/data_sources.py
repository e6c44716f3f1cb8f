"""Data sources: one parquet file per offline-store group (docs/data-model.md, "Offline store"),
plus a push source per refreshable view, through which a refresh writes one user's recomputed
row online; offline, the same row is a part appended beside the group file, which the offline
store reads with it (``churnfs.store.offline``).

Paths live under ``DATA_DIR/offline_store`` of the world being applied: `feast apply` reads
``DATA_DIR`` from the environment (the Makefile exports it), and
``churnfs.store.apply_repo(settings)`` re-roots these sources in that settings' ``DATA_DIR``.
"""

from pathlib import Path

from feast import FileSource, PushSource

from churnfs.settings import Settings
from feature_repo.entities import OWNER

OFFLINE_STORE_DIR: Path = Settings().offline_store_dir.resolve()
TIMESTAMP_FIELD = "event_timestamp"
CREATED_TIMESTAMP_COLUMN = "created_timestamp"
TAGS = {"team": "ml-platform", "layer": "offline_store", "producer": "transformations.job"}


def _group_source(group: str, description: str) -> FileSource:
    return FileSource(
        name=f"{group}_source",
        path=str(OFFLINE_STORE_DIR / f"{group}.parquet"),
        timestamp_field=TIMESTAMP_FIELD,
        created_timestamp_column=CREATED_TIMESTAMP_COLUMN,
        description=description,
        owner=OWNER,
        tags=TAGS,
    )


user_profile_source = _group_source(
    "user_profile_features",
    "Weekly snapshots of each user's profile (user_table) as of each as-of time.",
)
user_activity_source = _group_source(
    "user_activity_features",
    "Weekly snapshots of each user's event-log aggregates, from events strictly before the as-of time.",
)
user_review_source = _group_source(
    "user_review_features",
    "Weekly snapshots of each user's review aggregates: ratings, VADER sentiment and topic mix.",
)
user_review_embeddings_source = _group_source(
    "user_review_embeddings",
    "Each user's mean MiniLM review embedding: a row at the user's first as-of time and at every "
    "as-of time where it changed (event-sourced; the latest row at or before t is the value at t).",
)
churn_labels_source = _group_source(
    "churn_labels",
    "Churn labels: 1 if the user churns within 30 days after the cutoff (event_timestamp). Training only.",
)


def _push_source(name: str, batch_source: FileSource, what: str) -> PushSource:
    return PushSource(
        name=name,
        batch_source=batch_source,
        description=f"Fresh {what} of one user, pushed by a refresh (the batch file's columns).",
        owner=OWNER,
        tags={"team": "ml-platform", "layer": "online_refresh"},
    )


user_profile_push = _push_source("user_profile_push", user_profile_source, "profile features")
user_activity_push = _push_source("user_activity_push", user_activity_source, "activity features")
user_review_push = _push_source("user_review_push", user_review_source, "review features")
user_review_embeddings_push = _push_source(
    "user_review_embeddings_push", user_review_embeddings_source, "mean review embedding"
)
