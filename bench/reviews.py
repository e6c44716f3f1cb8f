"""Benchmark of the review feature group (embeddings, sentiment, topics, per-user snapshots).

Generates a world with ``churnfs generate`` once; then each of ``runs`` runs works on a fresh copy
of its raw tables (cold embedding cache) and measures, each step in its own fresh process:

1. the whole review job cold (``build_features(groups=["review"])``: read, validate, embed each
   distinct review text once with the configured backend, VADER, topic fit, snapshots, write);
   the distinct texts it embedded are counted from its embedding cache (one row per text);
2. the baseline, plain PyTorch ``SentenceTransformer.encode`` fp32, on exactly those distinct texts
   (same batch size, sorted by length as the job does; model load and warm-up not timed), and
   the worst cosine between its embeddings and the job's over every one of them;
3. 1% new reviews appended to ``review_table`` (new ids, fresh texts from the generator's
   composer), then the job again: only the new texts are embedded, the rest come from the cache.

Speeds are per distinct embedded text, not per review row: a text shared by several reviews is
embedded once by the job, and once by the baseline. The page shows medians and ranges over runs.
The embedding backend is the settings' default unless ``EMBEDDING_BACKEND`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.common import VENV_BIN, Row, Spread, load_average, marked_line, run_measured

SUITE = "reviews"
NEW_SHARE = 0.01
SPEEDUP_GOAL = 2.0
RERUN_GOAL = 20.0
COSINE_GOAL = 0.99
ROWS_KEY = "rows user_review_features"
EMBEDDED_LOG = "embedded %d texts in %.1f s (%.1f reviews/s, %s)"
"""The message ``transformations.embeddings`` logs after embedding (texts, seconds, rate, backend)."""


class _EmbeddingPhase(logging.Handler):
    """Keeps the job's own report of its embedding phase (texts, seconds, backend)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.report: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == EMBEDDED_LOG and isinstance(record.args, tuple):
            texts, seconds, _, backend = record.args
            self.report = {"embed texts": texts, "embed seconds": seconds, "backend": backend}


def job(data_dir: str) -> None:
    """Subprocess: the review group of the feature job, as ``churnfs features`` runs it."""
    import resource
    import time

    from churnfs.settings import Settings
    from transformations.job import build_features

    phase = _EmbeddingPhase()
    embeddings_logger = logging.getLogger("transformations.embeddings")
    embeddings_logger.addHandler(phase)
    embeddings_logger.setLevel(logging.INFO)
    started = time.perf_counter()
    summary = build_features(Settings(data_dir=Path(data_dir)), groups=["review"], show_progress=False)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary["job seconds"] = time.perf_counter() - started
    summary["cpu seconds"] = usage.ru_utime + usage.ru_stime
    summary.update(phase.report)
    print("SUMMARY " + json.dumps(summary, default=str))


def embedded_texts(data_dir: Path) -> tuple[Any, Any]:
    """The distinct texts the job embedded (from its embedding cache: one row per text, keyed by
    the first review holding it) and the job's embeddings of them, in cache order."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from churnfs.settings import Settings

    settings = Settings(data_dir=data_dir)
    parts = sorted((settings.artifacts_dir / "embeddings").glob("*/part-*.parquet"))
    if not parts:
        raise RuntimeError(f"no embedding cache under {settings.artifacts_dir}: did the review job run?")
    cache = pa.concat_tables(pq.read_table(p, columns=["review_id", "embedding"]) for p in parts)
    reviews = pd.read_parquet(settings.raw_dir / "review_table.parquet", columns=["review_id", "review_text"])
    text_of = reviews.set_index("review_id")["review_text"]
    texts = text_of.loc[cache.column("review_id").to_numpy()].astype(str).tolist()
    embedding = cache.column("embedding").combine_chunks()
    vectors = np.asarray(pc.list_flatten(embedding).to_numpy(), dtype=np.float32).reshape(len(texts), -1)
    return texts, vectors


def baseline(data_dir: str) -> None:
    """Subprocess: plain fp32 ``encode`` of the distinct texts the job embedded; prints its speed
    and the worst cosine to the job's embeddings."""
    import time

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from churnfs.settings import Settings
    from transformations.embeddings import resolve_model_source

    settings = Settings(data_dir=Path(data_dir))
    texts, job_vectors = embedded_texts(Path(data_dir))
    reference = SentenceTransformer(resolve_model_source(settings.embedding_model), device="cpu")
    reference.encode(texts[:64], batch_size=settings.embedding_batch_size)  # warm-up
    start = time.perf_counter()
    expected = reference.encode(texts, batch_size=settings.embedding_batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - start
    cosine = (np.asarray(expected) * job_vectors).sum(axis=1)
    result = {"texts": len(texts), "seconds": seconds, "min_cosine": float(cosine.min())}
    print("BASELINE " + json.dumps(result))


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


def _cache_rows(data_dir: Path) -> int:
    import pyarrow.parquet as pq

    parts = (data_dir / "artifacts" / "embeddings").glob("*/part-*.parquet")
    return sum(pq.read_metadata(p).num_rows for p in parts)


def one_run(generated: Path, data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """A cold job, the baseline on the texts it embedded, then a re-run after 1% new reviews, on a
    fresh copy of the generated raw tables."""
    python = str(VENV_BIN / "python")
    shutil.copytree(generated / "raw", data_dir / "raw")
    run_env = {**env, "DATA_DIR": str(data_dir)}
    loads = [load_average()]
    cold = run_measured([python, "-m", "bench.reviews", "job", str(data_dir)], env=run_env)
    summary = json.loads(marked_line(cold.stdout, "SUMMARY"))
    distinct = _cache_rows(data_dir)
    loads.append(load_average())
    base = run_measured([python, "-m", "bench.reviews", "baseline", str(data_dir)], env=run_env)
    reference = json.loads(marked_line(base.stdout, "BASELINE"))
    if reference["texts"] != distinct:
        raise RuntimeError(f"the baseline embedded {reference['texts']} texts, the job {distinct}")
    added = run_measured([python, "-m", "bench.reviews", "add", str(data_dir), str(NEW_SHARE)], env=run_env)
    loads.append(load_average())
    rerun = run_measured([python, "-m", "bench.reviews", "job", str(data_dir)], env=run_env)
    loads.append(load_average())
    return {
        "distinct": distinct,
        "cold_s": cold.wall_s,
        "cold_rss_mb": cold.peak_rss_mb,
        "embed_s": summary.get("embed seconds"),
        "backend": summary.get("backend", "?"),
        "rows": summary.get(ROWS_KEY, "?"),
        "torch_s": reference["seconds"],
        "min_cosine": reference["min_cosine"],
        "new_reviews": int(marked_line(added.stdout, "ADDED")),
        "new_texts": _cache_rows(data_dir) - distinct,
        "rerun_s": rerun.wall_s,
        "loads": loads,
    }


def run(workdir: Path, users: int, runs: int = 3) -> list[Row]:
    """Generate a world at ``users``; ``runs`` times on a fresh copy: the cold job, the baseline
    on the same distinct texts, and the re-run after 1% new reviews."""
    generated = workdir / "generated"
    env = {"DATA_DIR": str(generated), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run_measured([str(VENV_BIN / "churnfs"), "generate", "--users", str(users), "--seed", "42"], env=env)

    import pyarrow.parquet as pq

    n_reviews = pq.read_metadata(generated / "raw" / "review_table.parquet").num_rows
    results = []
    for index in range(runs):
        results.append(one_run(generated, workdir / f"run-{index}", env))
        shutil.rmtree(workdir / f"run-{index}", ignore_errors=True)
    return _rows(results, users, n_reviews)


def _rows(results: list[dict[str, Any]], users: int, n_reviews: int) -> list[Row]:
    distinct = results[0]["distinct"]
    if any(r["distinct"] != distinct for r in results):
        raise RuntimeError(f"runs embedded different numbers of texts: {[r['distinct'] for r in results]}")
    backend = results[0]["backend"]
    job_rate = Spread.of([r["distinct"] / r["cold_s"] for r in results])
    torch_rate = Spread.of([r["distinct"] / r["torch_s"] for r in results])
    speedup = Spread.of([r["torch_s"] / r["cold_s"] for r in results])
    cosine = min(r["min_cosine"] for r in results)
    rerun = Spread.of([r["rerun_s"] for r in results])
    cold_s = Spread.of([r["cold_s"] for r in results])
    rerun_ratio = Spread.of([r["cold_s"] / r["rerun_s"] for r in results])
    loads = [x for r in results for x in r["loads"]]
    rows = [
        Row(SUITE, "reviews in the world", n_reviews, "reviews", note=f"{users:,} users"),
        Row(
            SUITE,
            "distinct texts embedded by the cold job",
            distinct,
            "texts",
            note=f"{n_reviews - distinct:,} reviews repeat a text embedded once; from the job's cache",
        ),
        Row(
            SUITE,
            "1-min load average around the runs, lowest-highest",
            f"{min(loads):.2f}-{max(loads):.2f}",
            note=f"{os.cpu_count()} cores; every step in its own fresh process, {len(results)} runs",
        ),
        Row(
            SUITE,
            "review job, cold cache (whole job)",
            job_rate.median,
            "texts/s",
            note=f"{job_rate.as_range('.1f')}; distinct texts over the job's wall time, "
            f"{cold_s.describe('.1f', ' s')}, incl. start-up, model load, VADER, topics, write; {backend}",
        ),
    ]
    if all(r["embed_s"] for r in results):
        embed_rate = Spread.of([r["distinct"] / r["embed_s"] for r in results])
        rows.append(
            Row(
                SUITE,
                f"job's embedding phase alone ({backend})",
                embed_rate.median,
                "texts/s",
                note=f"{embed_rate.as_range('.1f')}; as the job logs it: encode calls only",
            )
        )
    rows += [
        Row(
            SUITE,
            "plain PyTorch encode fp32, the same distinct texts",
            torch_rate.median,
            "texts/s",
            note=f"{torch_rate.as_range('.1f')}; its own process, same batch size, sorted by length; "
            "model load and warm-up not timed",
        ),
        Row(
            SUITE,
            "whole job vs plain encode, per distinct text",
            speedup.median,
            "x",
            f">= {SPEEDUP_GOAL:g}x",
            speedup.median >= SPEEDUP_GOAL,
            f"{speedup.as_range('.2f', 'x')}; plain encode seconds over cold job seconds, same texts",
        ),
        Row(
            SUITE,
            "min cosine vs fp32",
            cosine,
            "",
            f">= {COSINE_GOAL}",
            cosine >= COSINE_GOAL,
            f"worst over all {distinct:,} distinct texts and every run",
        ),
        Row(
            SUITE,
            "cold job peak RSS",
            Spread.of([r["cold_rss_mb"] for r in results]).median,
            "MB",
            note=Spread.of([r["cold_rss_mb"] for r in results]).as_range(".0f", " MB"),
        ),
        Row(
            SUITE,
            f"re-run after {results[0]['new_reviews']:,} new reviews (1%)",
            rerun.median,
            "s",
            note=f"{rerun.as_range('.1f', ' s')}; {results[0]['new_texts']:,} new texts embedded; "
            f"{results[0]['rows']} rows written",
        ),
        Row(
            SUITE,
            "re-run speed-up vs cold",
            rerun_ratio.median,
            "x",
            f">= {RERUN_GOAL:g}x",
            rerun_ratio.median >= RERUN_GOAL,
            rerun_ratio.as_range(".1f", "x"),
        ),
    ]
    return rows


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    command, *rest = argv
    if command == "job":
        job(rest[0])
    elif command == "baseline":
        baseline(rest[0])
    elif command == "add":
        add_new_reviews(rest[0], float(rest[1]))
    else:
        raise SystemExit(f"unknown command {command!r}: job, baseline or add")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
