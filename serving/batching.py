"""Micro-batching of one-user predictions: requests that arrive while a prediction is running are
scored together in the next call (one Feast read, one model call, one prediction-log write).

There is no waiting window: a request that finds the worker idle is scored at once, alone, so
batching adds no latency at low load; under concurrency it amortises the fixed cost of a Feast
read and of a model call (a CatBoost explanation costs 1.8 ms for one row, 0.9 ms per row in a
batch) over the requests that queued meanwhile. One worker thread scores; the event loop only
hands requests over and receives answers.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import RedisError

from churnfs.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

SHARED_FAILURES: tuple[type[Exception], ...] = (ServiceUnavailableError, RedisError)
"""Failures of the whole batch, not of a row (the model, the registry or Redis is unavailable):
every request gets the error at once instead of one failing call after another."""

MAX_BATCH = 64
"""At most this many queued requests go into one call."""

ScoreMany = Callable[[Sequence[int], Sequence[str]], Sequence[Any]]
"""Scores users (with each one's request id) and returns one result per user, in order."""


@dataclass
class _Pending:
    user_id: int
    request_id: str
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class PredictionBatcher:
    """Scores submitted users in batches on one worker thread.

    ``score_many`` must return one result per user. When a batch of several fails, each request
    is scored again alone, so one bad row fails only its own request."""

    def __init__(
        self,
        score_many: ScoreMany,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.score_many = score_many
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def submit(self, user_id: int, request_id: str) -> Any:
        """Score one user; returns what ``score_many`` gave for it or raises what it raised."""
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        pending = _Pending(user_id, request_id, loop.create_future(), loop)
        self._queue.put(pending)
        return await pending.future

    def _ensure_worker(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prediction-batcher", daemon=True)
                self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued, then stop the worker."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if self.on_batch is not None:
                try:
                    self.on_batch(len(batch))
                except Exception:  # a metric must never cost a batch its answers
                    logger.warning("batch-size callback failed", exc_info=True)
            self._score(batch)
            if stop:
                return

    def _score(self, batch: list[_Pending]) -> None:
        """Score a batch and answer every request in it, whatever happens. A failure shared by all
        rows (the store or the model is unavailable) answers them all at once; any other failure
        retries each request alone, so one bad row fails only its own request."""
        try:
            results = list(self.score_many([p.user_id for p in batch], [p.request_id for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"scored {len(results)} of {len(batch)} users")
        except SHARED_FAILURES as exc:
            for pending in batch:
                self._answer(pending, None, exc)
            return
        except Exception as exc:  # handed to the waiting request, whose handlers answer it
            if len(batch) > 1:
                for pending in batch:
                    self._score([pending])
                return
            self._answer(batch[0], None, exc)
            return
        except BaseException as exc:  # never leave a request waiting, even on the way out
            for pending in batch:
                self._answer(pending, None, exc)
            raise
        for pending, result in zip(batch, results, strict=True):
            self._answer(pending, result, None)

    @staticmethod
    def _answer(pending: _Pending, result: Any, error: BaseException | None) -> None:
        try:
            pending.loop.call_soon_threadsafe(_settle, pending.future, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            logger.debug("dropping the answer for user %s: event loop closed", pending.user_id)
