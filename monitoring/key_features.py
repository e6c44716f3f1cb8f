"""Key features: the few inputs whose drift alone raises an alert.

They come from the model, not from knowledge of the world: by default the champion's most
important features (mean absolute contribution to its log-odds on the reference window, the
same measure training logs), calendar features left out since they are never judged. An
operator may name them instead (``MONITORING_KEY_FEATURES``); without a champion and without a
list, there are none and every monitored feature counts equally, through the drift share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FROM_SETTINGS = "settings"
FROM_CHAMPION = "champion"
NONE = "none"


@dataclass(frozen=True)
class KeyFeatures:
    """The key features of a run, where they came from and the ranking they were taken from."""

    names: tuple[str, ...]
    source: str
    rule: str
    importance: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "source": self.source,
            "rule": self.rule,
            "importance": self.importance,
        }


def base_feature(column: str) -> str:
    """The feature a monitored column belongs to: ``topic_vector[3]`` -> ``topic_vector``."""
    return column.split("[", 1)[0]


def choose_key_features(
    configured: Sequence[str],
    importance: Mapping[str, float] | None,
    *,
    count: int,
    never: Sequence[str] = (),
) -> KeyFeatures:
    """The configured names when there are any; else the ``count`` features with the largest
    ``importance`` (ties by name), skipping those in ``never`` (the calendar features); else none.
    """
    if configured:
        return KeyFeatures(tuple(configured), FROM_SETTINGS, "named in MONITORING_KEY_FEATURES")
    if not importance:
        return KeyFeatures(
            (), NONE, "no champion to rank features: every monitored feature counts equally (drift share)"
        )
    ranked = sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))
    names = tuple(name for name, _ in ranked if name not in set(never))[:count]
    return KeyFeatures(
        names,
        FROM_CHAMPION,
        f"the champion's {count} most important non-calendar features "
        "(mean |contribution| to its log-odds on the reference window)",
        {name: float(value) for name, value in ranked},
    )


def key_feature_verdicts(keys: Sequence[str], verdict_of: Mapping[str, bool]) -> dict[str, bool | None]:
    """Whether each key feature drifted: a vector feature drifted when any of its components
    did; ``None`` when the run has no data for it."""
    out: dict[str, bool | None] = {}
    for key in keys:
        matches = [drifted for column, drifted in verdict_of.items() if base_feature(column) == key]
        out[key] = any(matches) if matches else None
    return out
