"""Training benchmark: the point-in-time training set and ``make train`` at ``users`` users.

Builds the world in ``workdir`` through the project's Python APIs (generate, features, Feast
apply; training reads only the offline side, so nothing is materialized), then measures, each in
its own process (wall time and peak RSS): the training-set build over the cutoffs of the three
periods (train, validation, test), and the whole ``train_models`` (training set, four models,
MLflow runs, test scoring, registration) as ``make train`` runs it. Reports each model's fit time,
the validation metrics table with the oracle row, and the chosen model's and the oracle's metrics
on the test period.

Goals: the whole ``make train`` within 10 minutes and 8 GB peak; the chosen model's test ROC-AUC
at least 0.95 of the oracle's on the same rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import Row, run_measured

SUITE = "train"
PYTHON = sys.executable

SETUP = """
import sys
from churnfs.settings import Settings
from churnfs.store import apply_repo
from datagen import generate_world
from transformations.job import build_features
settings = Settings(data_dir=sys.argv[1])
generate_world(settings, users=int(sys.argv[2]), seed=42, drift=True, show_progress=False)
build_features(settings, show_progress=False)
apply_repo(settings)
"""

TRAINING_SET = """
import json, sys
from churnfs.settings import Settings
from churnfs.store import get_store
from churnfs.world import load_world_spec
from training.dataset import build_training_set
settings = Settings(data_dir=sys.argv[1])
world = load_world_spec(settings.raw_dir)
store = get_store(settings, check_online=False)
ts = build_training_set(store, [c for cutoffs in world.periods().values() for c in cutoffs])
print(json.dumps({"rows": len(ts.frame), "seconds": ts.seconds}))
"""

TRAIN = """
import json, sys
from churnfs.settings import Settings
from training.train import train_models
summary = train_models(Settings(data_dir=sys.argv[1]), show_progress=False)
print(json.dumps(summary, default=str))
"""


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run(workdir: Path, users: int) -> list[Row]:
    data_dir = Path(workdir) / "world"
    setup = run_measured([PYTHON, "-c", SETUP, str(data_dir), str(users)])
    rows = [
        Row(SUITE, "world set-up (generate, features, apply), not timed against a goal", setup.wall_s, "s")
    ]

    built = run_measured([PYTHON, "-c", TRAINING_SET, str(data_dir)])
    info = _last_json(built.stdout)
    rows += [
        Row(SUITE, "training set rows (train + validation + test cutoffs)", str(info["rows"])),
        Row(
            SUITE,
            "training set build (Feast historical retrieval + point-in-time check)",
            info["seconds"],
            "s",
        ),
        Row(SUITE, "training set build process peak RSS", built.peak_rss_mb, "MB"),
    ]

    trained = run_measured([PYTHON, "-c", TRAIN, str(data_dir)])
    summary = _last_json(trained.stdout)
    rows += [
        Row(
            SUITE,
            "make train wall (train_models, 4 models + MLflow)",
            trained.wall_s,
            "s",
            "<= 600 s",
            trained.wall_s <= 600,
        ),
        Row(
            SUITE, "make train peak RSS", trained.peak_rss_mb, "MB", "<= 8192 MB", trained.peak_rss_mb <= 8192
        ),
        Row(SUITE, "train_models training set build", float(summary["training set seconds"]), "s"),
    ]
    for kind, seconds in summary["fit seconds"].items():
        rows.append(Row(SUITE, f"fit {kind}", float(seconds), "s"))
    table = {**summary["metrics"], "oracle": summary["oracle"]}
    for kind, metrics in table.items():
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        rows.append(Row(SUITE, f"validation metrics: {kind}", text))
    test = {summary["best model"]: summary["test metrics"], "oracle": summary["test oracle"]}
    for kind, metrics in test.items():
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        rows.append(Row(SUITE, f"test metrics: {kind}", text))
    share = float(summary["test roc_auc share of oracle"])
    rows.append(
        Row(
            SUITE,
            f"chosen model ({summary['best model']}) test ROC-AUC / oracle test ROC-AUC",
            share,
            "",
            ">= 0.95",
            share >= 0.95,
        )
    )
    return rows
