"""Per-cutoff sampling of the label rows before the join (training/sampling.py), on hand-made
entity frames."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from training.sampling import class_quotas, sample_per_cutoff

FEB_03 = datetime(2025, 2, 3, tzinfo=UTC)
MAR_03 = datetime(2025, 3, 3, tzinfo=UTC)
MAY_26 = datetime(2025, 5, 26, tzinfo=UTC)


def _entities(churned_by_cutoff: dict[datetime, tuple[int, int]]) -> pd.DataFrame:
    """Label rows in as-of order: at each cutoff, ``stay`` users with churned 0 then ``churn``
    users with churned 1, user ids 1.. (the same users at every cutoff)."""
    parts = []
    for cutoff, (stay, churn) in churned_by_cutoff.items():
        parts.append(
            pd.DataFrame(
                {
                    "user_id": range(1, stay + churn + 1),
                    "event_timestamp": pd.Timestamp(cutoff),
                    "churned": [0] * stay + [1] * churn,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_class_quotas_split_the_cap_by_largest_remainder() -> None:
    # 1,000 rows, 90 churned, cap 100: 91.0 and 9.0 exactly
    assert class_quotas([910, 90], 100) == [91, 9]
    # 3 and 7 of 10 into 5: 1.5 and 3.5, the tie goes to the first class
    assert class_quotas([3, 7], 5) == [2, 3]
    # 2 of 3 churned into 2: 0.667 and 1.333 -> 1 and 1
    assert class_quotas([1, 2], 2) == [1, 1]
    assert sum(class_quotas([9_101, 899], 1_000)) == 1_000


def test_a_cutoff_over_the_cap_keeps_its_churn_rate_and_at_most_the_cap() -> None:
    entities = _entities({FEB_03: (910, 90), MAR_03: (455, 45)})
    sample, report = sample_per_cutoff(entities, max_rows=100, seed=3)
    at_feb, at_mar = (sample[sample["event_timestamp"] == pd.Timestamp(c)] for c in (FEB_03, MAR_03))
    assert len(at_feb) == len(at_mar) == 100
    assert at_feb["churned"].sum() == 9 and at_mar["churned"].sum() == 9  # 9.0% in each, as before
    assert at_feb["user_id"].is_unique and set(at_feb["user_id"]) <= set(range(1, 1001))
    assert [(c.rows_before, c.rows_after) for c in report.cutoffs] == [(1000, 100), (500, 100)]
    assert report.sampled and report.tags() == {"training_sampled": "yes", "training_sample_seed": "3"}
    assert report.params() == {
        "max_rows_per_cutoff": "100",
        "rows_per_cutoff_before": "2025-02-03:1000,2025-03-03:500",
        "rows_per_cutoff_after": "2025-02-03:100,2025-03-03:100",
    }
    # sorted by user then cutoff, like the unsampled entity frame
    assert sample.equals(sample.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True))


def test_the_same_seed_draws_the_same_rows_and_another_seed_others() -> None:
    entities = _entities({FEB_03: (910, 90)})
    first, _ = sample_per_cutoff(entities, max_rows=100, seed=7)
    again, _ = sample_per_cutoff(entities.sample(frac=1.0, random_state=1), max_rows=100, seed=7)
    other, _ = sample_per_cutoff(entities, max_rows=100, seed=8)
    pd.testing.assert_frame_equal(first, again)  # nor does the input's row order matter
    assert set(first["user_id"]) != set(other["user_id"])
    # one cutoff's draw does not depend on which other cutoffs are in the frame
    with_another, _ = sample_per_cutoff(_entities({FEB_03: (910, 90), MAR_03: (95, 5)}), 100, seed=7)
    at_feb = with_another[with_another["event_timestamp"] == pd.Timestamp(FEB_03)].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, at_feb)


def test_cutoffs_at_or_under_the_cap_and_cutoffs_not_named_are_kept_whole() -> None:
    entities = _entities({FEB_03: (90, 10), MAR_03: (950, 50), MAY_26: (1900, 100)})
    sample, report = sample_per_cutoff(entities, max_rows=100, seed=0, cutoffs=[FEB_03, MAR_03])
    rows = sample.groupby("event_timestamp").size()
    assert rows.tolist() == [100, 100, 2000]  # Feb at the cap, Mar sampled, May (the test period) whole
    assert [c.sampled for c in report.cutoffs] == [False, True, False]
    whole = entities[entities["event_timestamp"] == pd.Timestamp(MAY_26)]
    assert set(sample.loc[sample["event_timestamp"] == pd.Timestamp(MAY_26), "user_id"]) == set(
        whole["user_id"]
    )


def test_no_cap_keeps_every_row_and_says_so() -> None:
    entities = _entities({FEB_03: (910, 90)})
    sample, report = sample_per_cutoff(entities, max_rows=0, seed=0)
    assert len(sample) == 1000 and sample["churned"].sum() == 90
    assert not report.sampled and report.tags()["training_sampled"] == "no"
    assert report.params()["rows_per_cutoff_after"] == "2025-02-03:1000"
    with pytest.raises(ValueError, match="max_rows must be >= 0"):
        sample_per_cutoff(entities, max_rows=-1, seed=0)
