"""Serving: a FastAPI feature and prediction service over the Feast repository.

``serving.app.create_app(settings)`` builds the app. It reads features online through Feast
(Redis), falls back to the offline store's latest snapshot when the online store has nothing
or cannot be reached, scores with the registered ``churn-model@champion`` (never with training
code) and appends every prediction to the prediction log that monitoring reads.
"""
