"""Micro-batching of one-user predictions (serving/batching.py): concurrent requests share a call,
a lone request is scored at once, and a failure reaches only the request it belongs to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from serving.batching import PredictionBatcher


class Scorer:
    """Scores ``user_id -> user_id * 10`` (None for odd ids above 100), recording each call; the
    first call can be held until released, so later requests queue up behind it."""

    def __init__(self, hold_first: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, user_ids: Sequence[int], request_ids: Sequence[str]) -> list[Any]:
        self.calls.append(list(user_ids))
        if len(self.calls) == 1:
            self.release.wait(5)
        if 13 in user_ids:
            raise ValueError("user 13's row is broken")
        return [
            None if u > 100 and u % 2 else {"user_id": u, "score": u * 10, "request_id": r}
            for u, r in zip(user_ids, request_ids, strict=True)
        ]


async def _submit_all(batcher: PredictionBatcher, scorer: Scorer, ids: list[int]) -> list[Any]:
    first = asyncio.create_task(batcher.submit(ids[0], f"r{ids[0]}"))
    while not scorer.calls:  # the worker is busy with the first request
        await asyncio.sleep(0.001)
    rest = [asyncio.create_task(batcher.submit(u, f"r{u}")) for u in ids[1:]]
    await asyncio.sleep(0.05)  # all of them queued
    scorer.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def _two_requests(batcher: PredictionBatcher) -> list[Any]:
    """Submit users 1 and 2 at once; their answers or errors, then the worker stopped."""

    async def two() -> list[Any]:
        return await asyncio.gather(batcher.submit(1, "a"), batcher.submit(2, "b"), return_exceptions=True)

    try:
        return asyncio.run(two())
    finally:
        batcher.close()


def test_requests_queued_behind_a_running_call_are_scored_together() -> None:
    scorer = Scorer(hold_first=True)
    sizes: list[int] = []
    batcher = PredictionBatcher(scorer, on_batch=sizes.append)
    try:
        results = asyncio.run(_submit_all(batcher, scorer, [1, 2, 3, 4, 101]))
    finally:
        batcher.close()
    assert scorer.calls == [[1], [2, 3, 4, 101]] and sizes == [1, 4]
    assert [r and r["score"] for r in results] == [10, 20, 30, 40, None]
    assert [r and r["request_id"] for r in results[:4]] == ["r1", "r2", "r3", "r4"]


def test_a_lone_request_is_scored_at_once_alone() -> None:
    scorer = Scorer()
    batcher = PredictionBatcher(scorer)

    async def one_by_one() -> list[Any]:
        return [await batcher.submit(u, "r") for u in (5, 6)]

    try:
        results = asyncio.run(one_by_one())
    finally:
        batcher.close()
    assert scorer.calls == [[5], [6]] and [r["score"] for r in results] == [50, 60]


def test_a_failing_row_fails_only_its_own_request() -> None:
    scorer = Scorer(hold_first=True)
    batcher = PredictionBatcher(scorer)
    try:
        results = asyncio.run(_submit_all(batcher, scorer, [1, 2, 13, 4]))
    finally:
        batcher.close()
    # the batch [2, 13, 4] failed, so each was scored again alone
    assert scorer.calls == [[1], [2, 13, 4], [2], [13], [4]]
    assert [r["score"] for r in (results[0], results[1], results[3])] == [10, 20, 40]
    assert isinstance(results[2], ValueError) and "user 13" in str(results[2])


def test_batches_hold_at_most_max_batch_requests() -> None:
    scorer = Scorer(hold_first=True)
    batcher = PredictionBatcher(scorer, max_batch=3)
    try:
        results = asyncio.run(_submit_all(batcher, scorer, list(range(1, 9))))
    finally:
        batcher.close()
    assert scorer.calls == [[1], [2, 3, 4], [5, 6, 7], [8]]
    assert [r["score"] for r in results] == [10 * u for u in range(1, 9)]


def test_close_stops_the_worker_and_a_later_request_starts_a_new_one() -> None:
    scorer = Scorer()
    batcher = PredictionBatcher(scorer)
    assert asyncio.run(batcher.submit(7, "r"))["score"] == 70
    batcher.close()
    assert batcher._thread is None
    assert asyncio.run(batcher.submit(8, "r"))["score"] == 80
    batcher.close()


@pytest.mark.parametrize("error", [RuntimeError("no model"), KeyError("x")])
def test_an_error_of_the_whole_call_reaches_every_request(error: Exception) -> None:
    def failing(user_ids: Sequence[int], request_ids: Sequence[str]) -> list[Any]:
        raise error

    results = _two_requests(PredictionBatcher(failing))
    assert all(r is error for r in results)


def test_a_shared_failure_answers_the_whole_batch_in_one_call() -> None:
    """Redis or the model being unavailable is no row's fault: no one-by-one retries."""
    from churnfs.errors import ServiceUnavailableError

    scorer = Scorer(hold_first=True)
    calls_before_failing = 1

    def unavailable(user_ids: Sequence[int], request_ids: Sequence[str]) -> list[Any]:
        if len(scorer.calls) >= calls_before_failing:
            scorer.calls.append(list(user_ids))
            raise ServiceUnavailableError("no model registered: run `make train`")
        return scorer(user_ids, request_ids)

    batcher = PredictionBatcher(unavailable)
    try:
        results = asyncio.run(_submit_all(batcher, scorer, [1, 2, 3, 4]))
    finally:
        batcher.close()
    assert scorer.calls == [[1], [2, 3, 4]]  # the batch failed once, and was not retried alone
    assert results[0]["score"] == 10
    assert all(isinstance(r, ServiceUnavailableError) and "make train" in str(r) for r in results[1:])


def test_a_failing_batch_size_callback_costs_no_answer() -> None:
    def broken_metric(size: int) -> None:
        raise RuntimeError("metrics backend down")

    batcher = PredictionBatcher(Scorer(), on_batch=broken_metric)
    try:
        assert asyncio.run(batcher.submit(3, "r"))["score"] == 30
    finally:
        batcher.close()


def test_a_call_returning_too_few_results_fails_each_request_not_the_worker() -> None:
    def short(user_ids: Sequence[int], request_ids: Sequence[str]) -> list[Any]:
        return [{"score": 1}] if len(user_ids) > 1 else []

    results = _two_requests(PredictionBatcher(short))
    assert all(isinstance(r, RuntimeError) and "scored 0 of 1" in str(r) for r in results)
