"""The probe's training set (``transformations/sentiment_train.csv``) is what the method says it
is: at least 800 labelled review sentences over many domains, balanced, with the hard kinds
present, and apart from the text it must not have seen: no sentence of the evaluation set, no
five-word run shared with the evaluation set or the generator's phrase lists."""

from __future__ import annotations

import re
from collections import Counter

from tests.fixtures.sentiment_sets import EVAL_SET, five_word_runs, generator_text, read_rows, shared_runs
from transformations.sentiment import TRAINING_SET, read_training_set

KINDS = {"plain", "negation", "mixed", "neutral_sounding", "understated", "emphatic", "informal"}


def rows() -> list[dict[str, str]]:
    return read_rows(TRAINING_SET)


def normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def test_training_set_is_well_formed_over_many_domains_and_kinds() -> None:
    data = rows()
    assert len(data) >= 800
    assert set(data[0]) == {"text", "label", "domain", "kind"}
    assert {r["label"] for r in data} == {"positive", "negative"}
    assert all(r["text"].strip() == r["text"] and r["text"] for r in data)
    assert len(Counter(r["domain"] for r in data)) >= 20
    kinds = Counter((r["kind"], r["label"]) for r in data)
    assert {kind for kind, _ in kinds} == KINDS
    for kind in KINDS - {"neutral_sounding"}:
        assert kinds[(kind, "positive")] >= 20 and kinds[(kind, "negative")] >= 20, kind
    assert kinds[("neutral_sounding", "negative")] >= 100
    texts = [normalised(r["text"]) for r in data]
    assert len(set(texts)) == len(texts)
    texts_read, labels = read_training_set()
    assert texts_read == [r["text"] for r in data] and labels.tolist() == [
        int(r["label"] == "positive") for r in data
    ]


def test_training_set_is_balanced_within_40_to_60_percent() -> None:
    data = rows()
    share = sum(r["label"] == "positive" for r in data) / len(data)
    assert 0.4 <= share <= 0.6, share


def test_training_set_shares_no_sentence_or_phrase_with_the_evaluation_set() -> None:
    evaluation = read_rows(EVAL_SET)
    assert not {normalised(r["text"]) for r in rows()} & {normalised(r["text"]) for r in evaluation}
    taken = set().union(*(five_word_runs(r["text"]) for r in evaluation))
    assert not shared_runs((r["text"] for r in rows()), taken)


def test_training_set_shares_no_phrase_with_the_generator() -> None:
    assert not shared_runs((r["text"] for r in rows()), five_word_runs(generator_text()))
