"""The hand-written sentiment evaluation set (``review_sentiment_eval.csv``) is what the
benchmark says it is: at least 400 labelled sentences, five domains, the hard kinds present, and
no five-word run shared with the generator's phrase lists or the sentiment prototypes."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from transformations.sentiment import NEGATIVE_PROTOTYPES, NEUTRAL_ANCHORS, POSITIVE_PROTOTYPES

EVAL_SET = Path(__file__).with_name("review_sentiment_eval.csv")
DATAGEN = Path(__file__).resolve().parents[2] / "datagen"
DOMAINS = {"electronics", "restaurants", "films", "fashion", "delivery_service"}


def rows() -> list[dict[str, str]]:
    with EVAL_SET.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def five_word_runs(text: str) -> set[str]:
    words = re.findall(r"[a-z']+", text.lower())
    return {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}


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
    generator = "\n".join(p.read_text(encoding="utf-8") for p in DATAGEN.glob("*.py"))
    prototypes = "\n".join((*POSITIVE_PROTOTYPES, *NEGATIVE_PROTOTYPES, *NEUTRAL_ANCHORS))
    taken = five_word_runs(generator) | five_word_runs(prototypes)
    shared = {r["text"]: five_word_runs(r["text"]) & taken for r in rows()}
    assert not {text: runs for text, runs in shared.items() if runs}


def test_prototypes_share_no_phrase_with_the_generator() -> None:
    generator = "\n".join(p.read_text(encoding="utf-8") for p in DATAGEN.glob("*.py"))
    taken = five_word_runs(generator)
    shared = {
        t: five_word_runs(t) & taken for t in (*POSITIVE_PROTOTYPES, *NEGATIVE_PROTOTYPES, *NEUTRAL_ANCHORS)
    }
    assert not {text: runs for text, runs in shared.items() if runs}
