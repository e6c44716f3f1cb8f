"""Serving's fast path (the model's ``predict_rows`` on plain feature mappings) against the
pyfunc's ``predict`` on a frame: the same design matrix, probabilities and contributions for every
model kind, and the serving side choosing and leaving the fast path correctly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving.model import ChampionModel, fast_path_of
from training.churn_model_pyfunc import ChurnModel, FeatureSpec, InputFeature, RowEncoder, design_matrix
from training.estimators import MODEL_KINDS, fit_estimator, save_estimator

SPEC_INPUTS = (
    InputFeature("events_30d", "int"),
    InputFeature("income", "float"),
    InputFeature("premium", "bool"),
    InputFeature("device", "string", levels=("android", "ios", "web")),
    InputFeature("shares", "vector", labels=("a", "b", "c")),
)


def _rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        shares = rng.dirichlet([1.0, 1.0, 1.0])
        rows.append(
            {
                "user_id": int(rng.integers(1, 10**6)),
                "events_30d": int(rng.poisson(6)),
                "income": float(rng.normal(3000, 800)),
                "premium": bool(rng.uniform() < 0.3),
                "device": str(rng.choice(["android", "ios", "web"])),
                "shares": [float(s) for s in shares],
            }
        )
    return rows


def _labels(rows: list[dict[str, Any]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logit = np.array(
        [-1.5 - 0.2 * r["events_30d"] + 0.8 * r["premium"] + 1.5 * r["shares"][0] for r in rows]
    ) + 0.5 * np.array([r["device"] == "web" for r in rows])
    return (rng.uniform(size=len(rows)) < 1 / (1 + np.exp(-logit))).astype(int)


# Rows the pipeline can produce and a few it should not, all scored: missing views (None),
# NaN, numpy scalars and arrays, an unseen level and a non-string category, extra keys.
AWKWARD_ROWS: list[dict[str, Any]] = [
    {"events_30d": None, "income": None, "premium": None, "device": None, "shares": None},
    {"events_30d": 3, "income": float("nan"), "premium": True, "device": "tv", "shares": [0.2, 0.3, 0.5]},
    {
        "events_30d": np.int64(12),
        "income": np.float32(1234.5),
        "premium": np.bool_(False),
        "device": np.str_("ios"),
        "shares": np.array([0.6, 0.4, 0.0], dtype=np.float32),
        "ignored": "x",
    },
    {"events_30d": 0, "income": -1.0, "premium": False, "device": 7, "shares": (1.0, 0.0, 0.0)},
]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame serving used to build: one column per key of the first row."""
    return pd.DataFrame({name: [row.get(name) for row in rows] for name in rows[0]})


@pytest.fixture(scope="module", params=MODEL_KINDS)
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ChurnModel:
    """A small model of each kind, saved and read back as the registered runtime loads it."""
    kind = request.param
    spec = FeatureSpec(model_kind=kind, feature_service="churn_model_v1", inputs=SPEC_INPUTS)
    train, valid = _rows(800, 1), _rows(300, 2)
    fitted = fit_estimator(
        kind,
        design_matrix(_frame(train), spec),
        _labels(train, 3),
        design_matrix(_frame(valid), spec),
        _labels(valid, 4),
        spec.columns,
        max_rounds=30,
    )
    model_dir = tmp_path_factory.mktemp(f"model-{kind}")
    save_estimator(fitted, model_dir)
    (model_dir / "spec.json").write_text(spec.to_json())
    return ChurnModel.load(model_dir)


def test_row_encoder_builds_the_design_matrix_of_the_frame_path() -> None:
    spec = FeatureSpec(model_kind="lightgbm", feature_service="churn_model_v1", inputs=SPEC_INPUTS)
    rows = _rows(5, 9) + AWKWARD_ROWS
    encoded = RowEncoder(spec).encode(rows)
    np.testing.assert_array_equal(encoded, design_matrix(_frame(rows), spec))
    # missing numbers and vectors stay NaN; a missing, unseen or non-string category is all zeros
    assert np.isnan(encoded[5, [0, 1, 2, 6, 7, 8]]).all() and (encoded[5, 3:6] == 0).all()
    assert (encoded[6, 3:6] == 0).all() and (encoded[8, 3:6] == 0).all()
    assert encoded[7].tolist()[:6] == [12.0, float(np.float32(1234.5)), 0.0, 0.0, 1.0, 0.0]


def test_row_encoder_refuses_rows_without_an_input_or_with_a_short_vector() -> None:
    spec = FeatureSpec(model_kind="lightgbm", feature_service="churn_model_v1", inputs=SPEC_INPUTS)
    encoder = RowEncoder(spec)
    row = _rows(1, 5)[0]
    with pytest.raises(ValueError, match="lack the model's input features \\['income'\\]"):
        encoder.encode([{k: v for k, v in row.items() if k != "income"}])
    with pytest.raises(ValueError, match="'shares': row 0 has 2 components, the model expects 3"):
        encoder.encode([{**row, "shares": [0.5, 0.5]}])


def test_predict_rows_equals_the_pyfunc_predict_to_1e_9(model: ChurnModel) -> None:
    rows = _rows(40, 11) + AWKWARD_ROWS
    expected = model.predict(_frame(rows), params={"explain": True})
    probabilities, contributions, names = model.predict_rows(rows, explain=True)
    assert names == [f.name for f in SPEC_INPUTS]
    assert contributions is not None and contributions.shape == (len(rows), len(names))
    np.testing.assert_allclose(probabilities, expected["churn_probability"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        contributions, expected[[f"contrib__{n}" for n in names]].to_numpy(), rtol=0, atol=1e-9
    )
    # one row alone (the serving case) scores like the same row in a batch
    one, one_contrib, _ = model.predict_rows(rows[3:4], explain=True)
    assert one_contrib is not None
    assert math.isclose(one[0], probabilities[3], rel_tol=0, abs_tol=1e-12)
    np.testing.assert_allclose(one_contrib[0], contributions[3], rtol=0, atol=1e-12)
    plain, none, _ = model.predict_rows(rows, explain=False)
    assert none is None
    np.testing.assert_array_equal(plain, probabilities)


class _Pyfunc:
    """What MLflow's PyFuncModel exposes to serving: ``predict`` and ``_model_impl``."""

    def __init__(self, implementation: ChurnModel) -> None:
        self._model_impl = implementation
        self.predict_calls = 0

    def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        self.predict_calls += 1
        return self._model_impl.predict(frame, params=params)


def _champion(pyfunc: Any) -> ChampionModel:
    return ChampionModel(
        name="churn-model",
        version="3",
        alias="champion",
        run_id=None,
        feature_service="churn_model_v1",
        pyfunc=pyfunc,
    )


def test_serving_scores_through_the_fast_path_when_the_model_has_one(model: ChurnModel) -> None:
    pyfunc = _Pyfunc(model)
    champion = _champion(pyfunc)
    assert champion.scoring_path == "rows"
    rows = _rows(3, 21)
    scores = champion.score(rows)
    assert pyfunc.predict_calls == 0
    expected = model.predict(_frame(rows), params={"explain": True})
    for score, (_, row) in zip(scores, expected.iterrows(), strict=True):
        assert score.churn_probability == pytest.approx(row["churn_probability"], abs=1e-9)
        assert list(score.contributions) == [f.name for f in SPEC_INPUTS]
        for name, value in score.contributions.items():
            assert value == pytest.approx(row[f"contrib__{name}"], abs=1e-9)


def test_a_model_without_predict_rows_is_scored_through_predict(model: ChurnModel) -> None:
    class OldRuntime:  # a model registered before the fast path existed
        def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
            return model.predict(frame, params=params)

    pyfunc = _Pyfunc(model)
    pyfunc._model_impl = OldRuntime()  # type: ignore[assignment]
    assert fast_path_of(pyfunc) is None and fast_path_of(object()) is None
    champion = _champion(pyfunc)
    assert champion.scoring_path == "pyfunc"
    scores = champion.score(_rows(2, 22))
    assert pyfunc.predict_calls == 1 and len(scores[0].contributions) == len(SPEC_INPUTS)


def test_a_broken_fast_path_is_dropped_for_predict(model: ChurnModel) -> None:
    pyfunc = _Pyfunc(model)

    def broken(rows: Any, explain: bool = False) -> Any:
        raise RuntimeError("a bug in predict_rows")

    champion = _champion(pyfunc)
    champion.fast_path = broken
    rows = _rows(2, 23)
    scores = champion.score(rows)
    expected = model.predict(_frame(rows), params={"explain": True})
    assert [s.churn_probability for s in scores] == pytest.approx(list(expected["churn_probability"]))
    assert champion.scoring_path == "pyfunc" and champion.explains


def test_rows_both_paths_refuse_raise_and_keep_the_fast_path(model: ChurnModel) -> None:
    champion = _champion(_Pyfunc(model))
    bad = {**_rows(1, 24)[0], "shares": [1.0]}
    with pytest.raises(ValueError, match="components"):
        champion.score([bad])
    assert champion.scoring_path == "rows" and champion.explains


def test_the_runtime_module_needs_nothing_from_this_project() -> None:
    source = Path(__file__).resolve().parents[2] / "training" / "churn_model_pyfunc.py"
    imports = [
        line.split()[1]
        for line in source.read_text().splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    ]
    assert all(not name.startswith(("training", "serving", "churnfs")) for name in imports), imports
