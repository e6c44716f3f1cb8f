"""Training: point-in-time training sets from Feast, four churn models, MLflow tracking and registry."""
