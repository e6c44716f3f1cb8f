"""Batch transformations: raw world -> offline store (``DATA_DIR/offline_store/``).

Pure functions, one module per feature group (``profile``, ``activity``, ``reviews``, ``labels``),
take tables and return tables; reading, validation and writing live at the edges: ``job`` (every
user, every as-of time) and ``refresh`` (one user, one as-of time) run the very same functions.
"""
