"""Feature services: the versioned feature sets a model is trained and served with.

A model's feature list never changes under it: a new list is a new service (churn_model_v2).
"""

from feast import FeatureService

from feature_repo.entities import OWNER
from feature_repo.feature_views import (
    user_activity_features,
    user_profile_features,
    user_review_features,
)

churn_model_v1 = FeatureService(
    name="churn_model_v1",
    # The 384-float review embedding (user_review_embeddings) stays out: the model reads its
    # compressed views (topic_vector, sentiment); the embedding is served for other uses and
    # monitored.
    features=[user_profile_features, user_activity_features, user_review_features],
    description="Features of the churn model v1: profile, activity and review features "
    "(without the raw review embedding).",
    owner=OWNER,
    tags={"team": "ml-platform", "model": "churn", "version": "1"},
)
