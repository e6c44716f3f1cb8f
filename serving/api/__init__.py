"""The HTTP layer: dependencies, error handlers and one router per resource."""
