"""Feature views: one per offline-store group, typed exactly as docs/data-model.md says.

Snapshots are written every 7 days (and at every label cutoff), so a value older than two runs
is stale: the TTLs let a point-in-time join reach back over one missed run and no further.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Bool, Float32, Float64, Int64, String

from feature_repo.data_sources import (
    churn_labels_source,
    user_activity_push,
    user_profile_push,
    user_review_embeddings_push,
    user_review_push,
)
from feature_repo.entities import OWNER, user

user_profile_features = FeatureView(
    name="user_profile_features",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="age", dtype=Int64, description="Age in years, 18..80."),
        Field(name="gender", dtype=String, description="female, male or other."),
        Field(name="country", dtype=String, description="ISO 3166 alpha-2 country code."),
        Field(name="income", dtype=Float64, description="Yearly income in USD."),
        Field(name="device", dtype=String, description="Device at signup: ios, android or web."),
        Field(name="premium", dtype=Bool, description="Has a paid subscription."),
        Field(name="account_age_days", dtype=Int64, description="Whole days from signup to the as-of time."),
    ],
    source=user_profile_push,
    online=True,
    description="Who the user is: demographics, signup device, subscription and account age.",
    owner=OWNER,
    tags={"team": "ml-platform", "group": "profile", "pii": "demographics", "refresh": "push"},
)

user_activity_features = FeatureView(
    name="user_activity_features",
    entities=[user],
    ttl=timedelta(days=14),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="total_events", dtype=Int64, description="Events before the as-of time."),
        Field(name="purchase_count", dtype=Int64, description="Purchases before the as-of time."),
        Field(name="add_to_cart_count", dtype=Int64, description="Add-to-cart events before the as-of time."),
        Field(name="session_count", dtype=Int64, description="Distinct sessions."),
        Field(name="avg_session_length", dtype=Float64, description="Mean session length in seconds."),
        Field(name="last_active_days", dtype=Float64, description="Days since the last event (or signup)."),
        Field(
            name="categorical_event_vector",
            dtype=Array(Float32),
            description="Share of each event type, in EVENT_TYPES order (6 floats).",
        ),
        Field(name="events_7d", dtype=Int64, description="Events in the 7 days before the as-of time."),
        Field(name="events_30d", dtype=Int64, description="Events in the 30 days before the as-of time."),
        Field(name="purchases_30d", dtype=Int64, description="Purchases in the last 30 days."),
        Field(name="support_contacts_30d", dtype=Int64, description="Support contacts in the last 30 days."),
        Field(name="activity_trend", dtype=Float64, description="Last 30 days vs the 30 before, in (-1, 1)."),
        Field(name="total_spend", dtype=Float64, description="USD spent on purchases."),
        Field(name="spend_30d", dtype=Float64, description="USD spent in the last 30 days."),
        Field(name="distinct_categories", dtype=Int64, description="Distinct product categories seen."),
        Field(
            name="mobile_share_30d", dtype=Float64, description="Share of last-30-day events on ios/android."
        ),
    ],
    source=user_activity_push,
    online=True,
    description="What the user did: event counts, recency, sessions, spend and their 30-day trend.",
    owner=OWNER,
    tags={"team": "ml-platform", "group": "activity", "refresh": "push"},
)

user_review_features = FeatureView(
    name="user_review_features",
    entities=[user],
    ttl=timedelta(days=14),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="has_reviews", dtype=Bool, description="At least one review before the as-of time."),
        Field(name="total_reviews", dtype=Int64, description="Reviews written."),
        Field(name="avg_rating", dtype=Float64, description="Mean star rating, 0 without reviews."),
        Field(name="avg_helpful_ratio", dtype=Float64, description="Mean helpful_votes / total_votes."),
        Field(name="avg_text_length", dtype=Float64, description="Mean words per review."),
        Field(
            name="last_review_days", dtype=Float64, description="Days since the latest review (or signup)."
        ),
        Field(name="sentiment_score", dtype=Float64, description="Mean VADER compound score, [-1, 1]."),
        Field(
            name="recent_sentiment", dtype=Float64, description="Mean compound score of the latest 3 reviews."
        ),
        Field(name="topic_vector", dtype=Array(Float32), description="Mean topic distribution (K floats)."),
    ],
    source=user_review_push,
    online=True,
    description="What the user wrote: review counts, ratings, sentiment and topics.",
    owner=OWNER,
    tags={"team": "ml-platform", "group": "reviews", "refresh": "push", "nlp": "vader,topics"},
)

user_review_embeddings = FeatureView(
    name="user_review_embeddings",
    entities=[user],
    # Event-sourced: a row only when the embedding changes, so no TTL (timedelta(0) disables it):
    # the value at t is the latest row at or before t, however old.
    ttl=timedelta(0),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(
            name="review_embedding",
            dtype=Array(Float32),
            description="Mean all-MiniLM-L6-v2 sentence embedding of the reviews before t (384 floats, "
            "all zeros without reviews); served for search and monitoring, not fed to the churn model.",
        ),
    ],
    source=user_review_embeddings_push,
    online=True,
    description="What the user wrote, as one vector: the mean sentence embedding of their reviews.",
    owner=OWNER,
    tags={"team": "ml-platform", "group": "reviews", "refresh": "push", "nlp": "minilm", "rows": "on-change"},
)

churn_labels = FeatureView(
    name="churn_labels",
    entities=[user],
    # A label belongs to its cutoff only: a join one day later must not pick it up.
    ttl=timedelta(days=1),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(
            name="churned", dtype=Int64, description="1 if the user churns within 30 days after the cutoff."
        ),
    ],
    source=churn_labels_source,
    online=False,
    description="Training labels at each cutoff; offline only (never materialized or served).",
    owner=OWNER,
    tags={"team": "ml-platform", "group": "labels", "usage": "training-only"},
)
