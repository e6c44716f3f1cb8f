"""Review embeddings: the reference model's own output, the fast backend's accuracy, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnfs.settings import Settings
from transformations.embeddings import (
    Encoder,
    effective_backend,
    list_column_to_matrix,
    load_encoder,
    resolve_model_source,
    review_vectors,
    text_hashes,
)

KNOWN_SENTENCE = "The delivery was two days late but the jacket fits perfectly."


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The ONNX fp32 encoder, loaded once per session (same settings key in every module)."""
    model_dir = tmp_path_factory.getbasetemp() / "review-model"
    return load_encoder(Settings(data_dir=model_dir, embedding_backend="onnx", embedding_device="cpu"))


@pytest.fixture(scope="module")
def reference_model() -> object:
    """The packaged model through plain sentence-transformers, PyTorch fp32."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_source("all-MiniLM-L6-v2"), device="cpu")


def generated_texts(n: int) -> list[str]:
    """Review texts written by the world generator's own composer."""
    from datagen.reviews import _compose_texts

    rng = np.random.default_rng(11)
    aspect = rng.integers(0, 6, n)
    tone = rng.integers(0, 3, n)
    texts, _ = _compose_texts(rng, aspect, tone)
    return [str(t) for t in texts]


def test_known_sentence_embedding_matches_the_models_own_encode(
    tmp_path_factory: pytest.TempPathFactory, reference_model: object
) -> None:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("torch"), embedding_backend="torch", embedding_device="cpu"
    )
    torch_encoder = load_encoder(settings)
    expected = reference_model.encode([KNOWN_SENTENCE], normalize_embeddings=True)  # type: ignore[attr-defined]
    actual = torch_encoder.encode([KNOWN_SENTENCE])
    assert actual.shape == (1, 384)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    assert np.linalg.norm(actual) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "openvino", "openvino-bf16"])
def test_fast_backends_stay_within_cosine_099_of_fp32_on_generated_reviews(
    tmp_path_factory: pytest.TempPathFactory, reference_model: object, backend: str
) -> None:
    """Every CPU backend offered (the default ``openvino-bf16`` included) keeps every embedding of
    generated reviews within cosine 0.99 of the model's own fp32 ``encode``."""
    model_dir = tmp_path_factory.getbasetemp() / "review-model"
    fast_encoder = load_encoder(
        Settings(data_dir=model_dir, embedding_backend=backend, embedding_device="cpu")
    )
    texts = generated_texts(300)
    reference = reference_model.encode(texts, normalize_embeddings=True, batch_size=64)  # type: ignore[attr-defined]
    fast = fast_encoder.encode(texts)
    assert fast.shape == (300, 384)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosine = (fast * reference).sum(axis=1)
    assert cosine.min() >= 0.99, f"{backend}: worst cosine {cosine.min():.4f}"
    # Batching and length-sorting must not mix rows up: one text alone gives the same vector.
    np.testing.assert_allclose(fast_encoder.encode([texts[7]])[0], fast[7], atol=2e-3)


def test_default_backend_is_openvino_bf16() -> None:
    assert Settings().embedding_backend == "openvino-bf16"


def test_rerun_embeds_only_new_or_changed_reviews(
    tmp_path_factory: pytest.TempPathFactory, encoder: Encoder
) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("cache"), embedding_backend="onnx")
    reviews = pd.DataFrame(
        {"review_id": [1, 2, 3], "review_text": ["Great value.", "Late delivery.", "The app crashes."]}
    )
    first = review_vectors(reviews, settings, encoder, show_progress=False)
    assert first.embedded == 3

    calls = encoder.texts_encoded
    again = review_vectors(reviews, settings, encoder, show_progress=False)
    assert again.embedded == 0
    assert encoder.texts_encoded == calls
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    np.testing.assert_array_equal(again.sentiment, first.sentiment)

    changed = pd.DataFrame(
        {
            "review_id": [1, 2, 3, 4],
            "review_text": ["Great value.", "Late delivery, box crushed.", "The app crashes.", "Love it."],
        }
    )
    update = review_vectors(changed, settings, encoder, show_progress=False)
    assert update.embedded == 2  # review 2 edited, review 4 new
    assert encoder.texts_encoded == calls + 2
    np.testing.assert_array_equal(update.embeddings[[0, 2]], first.embeddings[[0, 2]])
    np.testing.assert_allclose(update.embeddings[3], encoder.encode(["Love it."])[0], atol=1e-6)


def test_cache_keeps_vader_and_a_change_of_sentiment_method_reuses_it(
    tmp_path_factory: pytest.TempPathFactory, encoder: Encoder
) -> None:
    import pyarrow.parquet as pq

    from transformations.embeddings import cache_dir
    from transformations.sentiment import method_scores, vader_scores

    settings = Settings(data_dir=tmp_path_factory.mktemp("methods"), embedding_backend="onnx")
    texts = ["Great value.", "It stopped working after a week.", ""]
    reviews = pd.DataFrame({"review_id": [1, 2, 3], "review_text": texts})
    blend = review_vectors(reviews, settings.model_copy(update={"sentiment_method": "blend"}), encoder, False)
    cached = pq.read_table(cache_dir(settings, encoder)).to_pandas().sort_values("review_id")
    np.testing.assert_array_equal(cached["sentiment"].to_numpy(), vader_scores(texts))

    calls = encoder.texts_encoded
    for method in ("vader", "prototype", "blend"):
        again = review_vectors(
            reviews, settings.model_copy(update={"sentiment_method": method}), encoder, False
        )
        assert again.embedded == 0
        expected = method_scores(method, vader_scores(texts), blend.embeddings, texts, encoder)
        np.testing.assert_allclose(again.sentiment, expected)
    assert encoder.texts_encoded == calls
    np.testing.assert_array_equal(again.sentiment, blend.sentiment)
    assert blend.sentiment[2] == 0.0


def test_cache_key_changes_with_text_model_and_backend() -> None:
    base = text_hashes(["Great value."], "all-MiniLM-L6-v2", "onnx")[0]
    assert text_hashes(["Great value."], "all-MiniLM-L6-v2", "onnx")[0] == base
    assert text_hashes(["Great value!"], "all-MiniLM-L6-v2", "onnx")[0] != base
    assert text_hashes(["Great value."], "intfloat/e5-small-v2", "onnx")[0] != base
    assert text_hashes(["Great value."], "all-MiniLM-L6-v2", "torch")[0] != base


def test_cpu_backends_fall_back_to_torch_on_cuda() -> None:
    assert effective_backend("onnx", "cuda") == "torch"
    assert effective_backend("openvino-bf16", "cuda") == "torch"
    assert effective_backend("onnx-int8", "cpu") == "onnx-int8"
    assert effective_backend("openvino", "cpu") == "openvino"


def test_bf16_backend_runs_as_fp32_openvino_on_a_cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformations.embeddings as embeddings

    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: False)
    assert effective_backend("openvino-bf16", "cpu") == "openvino"
    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: True)
    assert effective_backend("openvino-bf16", "cpu") == "openvino-bf16"


def test_unknown_backend_or_device_is_the_users_error() -> None:
    from churnfs.errors import InvalidInputError
    from transformations.embeddings import resolve_device

    with pytest.raises(InvalidInputError, match="EMBEDDING_BACKEND"):
        effective_backend("tensorrt", "cpu")
    with pytest.raises(InvalidInputError, match="EMBEDDING_DEVICE"):
        resolve_device("tpu")


def test_interrupted_cold_run_keeps_the_blocks_it_finished(
    tmp_path_factory: pytest.TempPathFactory, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is written block by block, so a run killed half-way embeds only the rest."""
    import transformations.embeddings as embeddings

    monkeypatch.setattr(embeddings, "ENCODE_CHUNK", 2)
    monkeypatch.setattr(embeddings, "CACHE_BLOCK", 2)

    class FailsOnThirdChunk:
        def __init__(self, model: object) -> None:
            self.model, self.calls = model, 0

        def get_sentence_embedding_dimension(self) -> int:
            return 384

        def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.model.encode(texts, **kwargs)  # type: ignore[attr-defined, no-any-return]

    flaky = Encoder(FailsOnThirdChunk(encoder.model), encoder.model_name, encoder.backend, "cpu", 64)
    settings = Settings(data_dir=tmp_path_factory.mktemp("interrupted"))
    texts = generated_texts(6)
    reviews = pd.DataFrame({"review_id": range(1, 7), "review_text": texts})
    with pytest.raises(KeyboardInterrupt):
        review_vectors(reviews, settings, flaky, show_progress=False)

    calls = encoder.texts_encoded
    resumed = review_vectors(reviews, settings, encoder, show_progress=False)
    assert resumed.embedded == 2
    assert encoder.texts_encoded == calls + 2
    np.testing.assert_allclose(resumed.embeddings, encoder.encode(texts), atol=1e-6)


def test_compacting_the_cache_keeps_each_texts_first_row_in_small_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformations.embeddings as embeddings

    monkeypatch.setattr(embeddings, "CACHE_ROW_GROUP", 3)
    monkeypatch.setattr(embeddings, "COMPACT_PARTS", 4)
    parts = [["a", "b"], ["b", "c", "d", "e"], ["a", "f"], ["g", "c"]]
    for number, hashes in enumerate(parts):
        n = len(hashes)
        vectors = np.full((n, 2), float(number), dtype=np.float32)
        embeddings._append_to_cache(
            tmp_path, np.arange(n, dtype=np.int64) + 10 * number, np.asarray(hashes), vectors, np.zeros(n)
        )
    embeddings._compact(tmp_path)
    (merged,) = sorted(tmp_path.glob("part-*.parquet"))
    file = pq.ParquetFile(merged)
    # read 3 rows at a time (the second part in two batches), each batch's new rows one row group
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [2, 2, 1, 1, 1]
    table = file.read()
    assert table.column("text_hash").to_pylist() == ["a", "b", "c", "d", "e", "f", "g"]
    assert table.column("review_id").to_pylist() == [0, 1, 11, 12, 13, 21, 30]  # the first rows
    some = embeddings._read_cache(tmp_path, np.asarray(["g", "b", "zz", "b"]))
    assert some.column("text_hash").to_pylist() == ["b", "g"]
    assert list_column_to_matrix(some.column("embedding"), 2).tolist() == [[0.0, 0.0], [3.0, 3.0]]
