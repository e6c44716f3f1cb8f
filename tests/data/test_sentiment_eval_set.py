"""The hand-written sentiment evaluation set (``review_sentiment_eval.csv``) is what the
benchmark says it is: at least 400 labelled sentences, five domains, the hard kinds present, and
no five-word run shared with the generator's phrase lists or the sentiment prototypes."""

from __future__ import annotations

from collections import Counter

from tests.fixtures.sentiment_sets import EVAL_SET, five_word_runs, generator_text, read_rows, shared_runs
from transformations.sentiment import NEGATIVE_PROTOTYPES, NEUTRAL_ANCHORS, POSITIVE_PROTOTYPES

DOMAINS = {"electronics", "restaurants", "films", "fashion", "delivery_service"}


def rows() -> list[dict[str, str]]:
    return read_rows(EVAL_SET)


def test_eval_set_has_400_labelled_sentences_over_five_domains() -> None:
    data = rows()
    assert len(data) >= 400
    assert {r["label"] for r in data} == {"positive", "negative"}
    per_domain = Counter(r["domain"] for r in data)
    assert set(per_domain) == DOMAINS and min(per_domain.values()) >= 70
    kinds = Counter((r["kind"], r["label"]) for r in data)
    for kind in ("negation", "mixed"):
        assert kinds[(kind, "positive")] >= 20 and kinds[(kind, "negative")] >= 20
    assert kinds[("neutral_sounding", "negative")] >= 50
    texts = [r["text"].lower() for r in data]
    assert len(set(texts)) == len(texts)


def test_eval_set_shares_no_phrase_with_the_generator_or_the_prototypes() -> None:
    prototypes = "\n".join((*POSITIVE_PROTOTYPES, *NEGATIVE_PROTOTYPES, *NEUTRAL_ANCHORS))
    taken = five_word_runs(generator_text()) | five_word_runs(prototypes)
    assert not shared_runs((r["text"] for r in rows()), taken)


def test_prototypes_share_no_phrase_with_the_generator() -> None:
    prototypes = (*POSITIVE_PROTOTYPES, *NEGATIVE_PROTOTYPES, *NEUTRAL_ANCHORS)
    assert not shared_runs(prototypes, five_word_runs(generator_text()))
