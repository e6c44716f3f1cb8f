"""churnfs: a churn-prediction feature store on Feast.

The package holds what every stage shares: typed settings, errors, atomic I/O,
the world's calendar and the command line. Stages live in their own top-level
packages (``datagen``, ``transformations``, ``training``, ``serving``,
``monitoring``); Feast definitions live in ``feature_repo/``.
"""

__version__ = "0.1.0"
