"""The sentiment methods on hand-made vectors: the prototype axis's direction, zero and scale by
hand, the blend, blank texts and the method names."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from transformations.embeddings import Encoder
from transformations.sentiment import (
    NEGATIVE_PROTOTYPES,
    NEUTRAL_ANCHORS,
    POSITIVE_PROTOTYPES,
    PROTOTYPE_TARGET,
    build_prototype_axis,
    method_scores,
    prototype_axis,
)

DIAGONAL = [math.sqrt(0.5), math.sqrt(0.5)]


class ToyModel:
    """Two dimensions: positive prototypes on x, negative ones on y, neutral anchors between."""

    def __init__(self) -> None:
        self.vectors = {t: [1.0, 0.0] for t in POSITIVE_PROTOTYPES}
        self.vectors.update({t: [0.0, 1.0] for t in NEGATIVE_PROTOTYPES})
        self.vectors.update({t: DIAGONAL for t in NEUTRAL_ANCHORS})

    def get_sentence_embedding_dimension(self) -> int:
        return 2

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        return np.asarray([self.vectors[t] for t in texts], dtype=np.float32)


@pytest.fixture()
def toy_encoder() -> Encoder:
    return Encoder(model=ToyModel(), model_name="toy", backend="toy", device="cpu", batch_size=8)


def test_prototype_axis_puts_neutral_at_zero_and_prototypes_at_the_target() -> None:
    axis = build_prototype_axis(np.eye(2)[[0, 0, 0]], np.eye(2)[[1, 1, 1]], np.asarray([DIAGONAL]))
    np.testing.assert_allclose(axis.direction, [1.0, -1.0])
    assert axis.offset == pytest.approx(0.0, abs=1e-12)
    # Every leave-one-out margin is 1, so the scale is atanh(target).
    assert axis.scale == pytest.approx(math.atanh(PROTOTYPE_TARGET))
    scores = axis.scores(np.asarray([[1.0, 0.0], [0.0, 1.0], DIAGONAL, [0.6, 0.8]]))
    expected = [PROTOTYPE_TARGET, -PROTOTYPE_TARGET, 0.0, math.tanh(math.atanh(PROTOTYPE_TARGET) * -0.2)]
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_prototype_axis_refuses_prototypes_that_do_not_separate() -> None:
    same = np.eye(2)[[0, 0]]
    with pytest.raises(ValueError, match="do not separate"):
        build_prototype_axis(same, same, np.asarray([DIAGONAL]))


def test_blend_is_the_mean_of_vader_and_the_prototype_score(toy_encoder: Encoder) -> None:
    texts = ["good", "bad", "   "]
    vader = np.asarray([0.5, -0.2, 0.0])
    embeddings = np.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert prototype_axis(toy_encoder).scale == pytest.approx(math.atanh(PROTOTYPE_TARGET))
    proto = method_scores("prototype", vader, embeddings, texts, toy_encoder)
    np.testing.assert_allclose(proto, [PROTOTYPE_TARGET, -PROTOTYPE_TARGET, 0.0])  # blank text: 0
    blend = method_scores("blend", vader, embeddings, texts, toy_encoder)
    np.testing.assert_allclose(blend, [(0.5 + PROTOTYPE_TARGET) / 2, (-0.2 - PROTOTYPE_TARGET) / 2, 0.0])
    np.testing.assert_array_equal(method_scores("vader", vader, embeddings, texts, None), vader)


def test_unknown_method_and_missing_encoder_are_refused() -> None:
    with pytest.raises(ValueError, match="SENTIMENT_METHOD must be one of"):
        method_scores("bert", np.zeros(1), np.zeros((1, 2)), ["x"], None)
    with pytest.raises(ValueError, match="needs the encoder"):
        method_scores("blend", np.zeros(1), np.zeros((1, 2)), ["x"], None)
