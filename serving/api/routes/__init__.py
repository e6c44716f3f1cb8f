"""One router per resource: health, features, refresh, predict."""
