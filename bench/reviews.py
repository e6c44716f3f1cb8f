"""Benchmark of the review feature group (embeddings, sentiment, topics, per-user snapshots).

Generates a world with ``churnfs generate``, then in one run:

1. the whole review job cold (``build_features(groups=["review"])`` in a fresh subprocess: read,
   validate, embed every review with the configured backend, VADER, topic fit, snapshots, write),
   reviews/s over all generated reviews;
2. side by side on the same sample of review texts, in one subprocess: plain PyTorch
   ``SentenceTransformer.encode`` fp32 (the reference) and the job's encoder, each timed on the
   sample, plus the worst cosine between the two (every embedding must stay within 0.99);
3. 1% new reviews appended to ``review_table`` (new ids, fresh texts from the generator's
   composer), then the job again: only the new texts are embedded, the rest come from the cache.

The embedding backend is the settings' default unless ``EMBEDDING_BACKEND`` is set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bench.common import VENV_BIN, Row, marked_line, run_measured

SUITE = "reviews"
SAMPLE_TEXTS = 1500
NEW_SHARE = 0.01
SPEEDUP_GOAL = 2.0
RERUN_GOAL = 20.0
COSINE_GOAL = 0.99
ROWS_KEY = "rows user_review_features"


def job(data_dir: str) -> None:
    """Subprocess: the review group of the feature job, as ``churnfs features`` runs it."""
    import resource
    import time

    from churnfs.settings import Settings
    from transformations.job import build_features

    started = time.perf_counter()
    summary = build_features(Settings(data_dir=Path(data_dir)), groups=["review"], show_progress=False)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary["job seconds"] = time.perf_counter() - started
    summary["cpu seconds"] = usage.ru_utime + usage.ru_stime
    print("SUMMARY " + json.dumps(summary, default=str))


def compare(data_dir: str, sample: int) -> None:
    """Subprocess: plain fp32 ``encode`` vs the job's encoder on the same sample of texts."""
    import time

    import numpy as np
    import pandas as pd
    from sentence_transformers import SentenceTransformer

    from churnfs.settings import Settings
    from transformations.embeddings import load_encoder, resolve_model_source

    settings = Settings(data_dir=Path(data_dir))
    texts = pd.read_parquet(settings.raw_dir / "review_table.parquet", columns=["review_text"])["review_text"]
    texts = texts.sample(n=min(sample, len(texts)), random_state=0).tolist()
    reference = SentenceTransformer(resolve_model_source(settings.embedding_model), device="cpu")
    encoder = load_encoder(settings)
    reference.encode(texts[:64])
    encoder.encode(texts[:64])  # warm both

    start = time.perf_counter()
    expected = reference.encode(texts, normalize_embeddings=True)
    torch_s = time.perf_counter() - start
    start = time.perf_counter()
    actual = encoder.encode(texts)
    job_s = time.perf_counter() - start
    cosine = (np.asarray(actual) * np.asarray(expected)).sum(axis=1)
    result = {
        "texts": len(texts),
        "torch_rate": len(texts) / torch_s,
        "encoder_rate": len(texts) / job_s,
        "backend": encoder.backend,
        "device": encoder.device,
        "min_cosine": float(cosine.min()),
    }
    print("COMPARE " + json.dumps(result))


def add_new_reviews(data_dir: str, share: float) -> None:
    """Subprocess: append ``share`` new reviews (fresh texts, new ids, late timestamps)."""
    import numpy as np
    import pandas as pd

    from churnfs.io import write_parquet_atomic
    from churnfs.settings import Settings
    from datagen.reviews import _compose_texts

    path = Settings(data_dir=Path(data_dir)).raw_dir / "review_table.parquet"
    reviews = pd.read_parquet(path)
    rng = np.random.default_rng(2024)
    new = reviews.sample(n=max(1, int(len(reviews) * share)), random_state=1).copy()
    texts, _ = _compose_texts(rng, rng.integers(0, 6, len(new)), rng.integers(0, 3, len(new)))
    new["review_text"] = [f"{t} Update {i}." for i, t in enumerate(texts)]
    new["review_id"] = reviews["review_id"].max() + 1 + np.arange(len(new))
    write_parquet_atomic(pd.concat([reviews, new], ignore_index=True), path)
    print(f"ADDED {len(new)}")


def run(workdir: Path, users: int) -> list[Row]:
    """Generate a world at ``users``; time the cold job, the encode comparison, and the re-run."""
    data_dir = str(workdir / "world")
    env = {"DATA_DIR": data_dir, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    python = str(VENV_BIN / "python")
    run_measured([str(VENV_BIN / "churnfs"), "generate", "--users", str(users), "--seed", "42"], env=env)

    import pyarrow.parquet as pq

    n_reviews = pq.read_metadata(Path(data_dir) / "raw" / "review_table.parquet").num_rows
    cold = run_measured([python, "-m", "bench.reviews", "job", data_dir], env=env)
    cold_summary = json.loads(marked_line(cold.stdout, "SUMMARY"))
    compared = run_measured([python, "-m", "bench.reviews", "compare", data_dir, str(SAMPLE_TEXTS)], env=env)
    cmp = json.loads(marked_line(compared.stdout, "COMPARE"))
    added = run_measured([python, "-m", "bench.reviews", "add", data_dir, str(NEW_SHARE)], env=env)
    n_new = int(marked_line(added.stdout, "ADDED"))
    rerun = run_measured([python, "-m", "bench.reviews", "job", data_dir], env=env)

    cold_rate = n_reviews / cold.wall_s
    speedup = cold_rate / cmp["torch_rate"]
    rerun_ratio = cold.wall_s / rerun.wall_s
    sample_note = f"same {cmp['texts']:,} sampled texts, one process"
    backend = f"{cmp['backend']} on {cmp['device']}"
    return [
        Row(SUITE, "reviews in the world", n_reviews, "reviews", note=f"{users:,} users"),
        Row(
            SUITE,
            "review job, cold cache (whole job)",
            cold_rate,
            "reviews/s",
            note=f"{cold.wall_s:.1f} s wall incl. start-up, model load, VADER, topics, write; {backend}",
        ),
        Row(SUITE, "plain PyTorch encode fp32", cmp["torch_rate"], "reviews/s", note=sample_note),
        Row(SUITE, f"job encoder ({backend})", cmp["encoder_rate"], "reviews/s", note=sample_note),
        Row(
            SUITE,
            "whole job vs plain encode",
            speedup,
            "x",
            f">= {SPEEDUP_GOAL:g}x",
            speedup >= SPEEDUP_GOAL,
            "cold job reviews/s over plain encode reviews/s",
        ),
        Row(
            SUITE,
            "min cosine vs fp32",
            cmp["min_cosine"],
            "",
            f">= {COSINE_GOAL}",
            cmp["min_cosine"] >= COSINE_GOAL,
            sample_note,
        ),
        Row(SUITE, "cold job peak RSS", cold.peak_rss_mb, "MB"),
        Row(
            SUITE,
            f"re-run after {n_new:,} new reviews (1%)",
            rerun.wall_s,
            "s",
            note=f"cold {cold.wall_s:.1f} s; {cold_summary.get(ROWS_KEY, '?')} rows written",
        ),
        Row(
            SUITE,
            "re-run speed-up vs cold",
            rerun_ratio,
            "x",
            f">= {RERUN_GOAL:g}x",
            rerun_ratio >= RERUN_GOAL,
        ),
    ]


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    command, *rest = argv
    if command == "job":
        job(rest[0])
    elif command == "compare":
        compare(rest[0], int(rest[1]))
    elif command == "add":
        add_new_reviews(rest[0], float(rest[1]))
    else:
        raise SystemExit(f"unknown command {command!r}: job, compare or add")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
