"""The real review snippets (``transformations/review_snippets.csv``) are what their docs say: the
VADER paper's Amazon and movie snippets with people's mean ratings, labelled by the rating's sign
past ``SNIPPET_POLARITY``, and split by group into a training part and a held-out part that share
no group and no text."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np

from transformations.sentiment import (
    REVIEW_SNIPPETS,
    SNIPPET_HELD_OUT_SHARE,
    SNIPPET_POLARITY,
    probe_training_pool,
    read_snippets,
    read_training_set,
    snippet_split,
    source_weights,
)


def raw_rows() -> list[dict[str, str]]:
    with REVIEW_SNIPPETS.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_snippets_file_holds_both_sources_of_the_vader_data_set_with_their_licence() -> None:
    rows = raw_rows()
    assert Counter(r["source"] for r in rows) == {"amazon": 3708, "movie": 10605}
    assert all(-4.0 <= float(r["rating"]) <= 4.0 and r["text"].strip() == r["text"] != "" for r in rows)
    amazon = [r for r in rows if r["source"] == "amazon"]
    assert all(r["id"].split("_")[0] == r["group"] for r in amazon)
    assert len({r["group"] for r in amazon}) >= 300
    licence = REVIEW_SNIPPETS.with_name("review_snippets_LICENSE.txt").read_text(encoding="utf-8")
    assert "MIT License" in licence and "Hutto" in licence


def test_labels_follow_the_mean_rating_and_leave_the_middle_out() -> None:
    rows = raw_rows()
    polar = [r for r in rows if abs(float(r["rating"])) >= SNIPPET_POLARITY]
    train, held_out = read_snippets("train"), read_snippets("held_out")
    assert len(train) + len(held_out) <= len(polar) < len(rows)
    rating = {(r["source"], r["text"]): float(r["rating"]) for r in polar}
    for part in (train, held_out):
        for source, text, label in zip(part.sources, part.texts, part.labels, strict=True):
            assert (rating[(source, text)] > 0) == bool(label)


def test_split_keeps_each_group_on_one_side_and_no_text_on_both() -> None:
    train, held_out = read_snippets("train"), read_snippets("held_out")
    for source in ("amazon", "movie"):
        train_groups = set(train.groups[train.sources == source])
        held_groups = set(held_out.groups[held_out.sources == source])
        assert not train_groups & held_groups
        share = len(held_groups) / (len(train_groups) + len(held_groups))
        assert abs(share - SNIPPET_HELD_OUT_SHARE) < 0.06, (source, share)
        assert all(snippet_split(source, g) == "held_out" for g in held_groups)
    assert not set(train.texts) & set(held_out.texts)


def test_training_pool_is_the_hand_written_set_then_the_training_snippets() -> None:
    pool = probe_training_pool()
    hand_texts, hand_labels = read_training_set()
    train = read_snippets("train")
    assert pool.texts == [*hand_texts, *train.texts]
    np.testing.assert_array_equal(pool.labels, np.concatenate([hand_labels, train.labels]))
    assert Counter(pool.sources.tolist()) == {
        "handwritten": len(hand_texts),
        **Counter(train.sources.tolist()),
    }
    assert not set(pool.texts) & set(read_snippets("held_out").texts)
    only_amazon = probe_training_pool(("amazon",))
    assert set(only_amazon.sources) == {"amazon"} and len(only_amazon) == int(
        (train.sources == "amazon").sum()
    )


def test_source_weights_give_every_source_the_same_total() -> None:
    sources = np.asarray(["a"] * 6 + ["b"] * 2 + ["c"] * 1)
    weights = source_weights(sources)
    totals = {s: weights[sources == s].sum() for s in "abc"}
    assert np.allclose(list(totals.values()), 3.0) and np.isclose(weights.sum(), len(sources))
