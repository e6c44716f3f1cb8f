"""Feast definitions of churnfs, split by object kind: entities, data sources, feature views and
feature services. `feast apply` (run from the repository root) imports these modules; they hold
declarations only and import nothing heavier than Feast and the settings object."""
