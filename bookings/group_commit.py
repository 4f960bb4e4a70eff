"""Group commit: concurrent callers in one process share a transaction.

At an on-sale every web process has many reservation requests in flight at
once. Run one by one, each pays for its own round trips, its own commit
(a WAL flush) and its own Python transaction bookkeeping, and throughput
falls as concurrency rises. Here the first caller to arrive becomes the
leader and runs its work at once; callers arriving while that batch runs
queue up, and when it ends the first of them leads the next batch with the
rest. There is no timer: under light load a batch is one call and adds no
latency; under heavy load batches grow and the cost per call falls.

Each waiting caller sleeps on its own lock and is woken exactly once,
either with its result or to lead (waking every waiter on each batch would
cost more than the batching saves).

A batch function takes the callers' arguments in order and returns one
result each. If it raises, every caller in the batch gets None, meaning
"not done, take the slow path": a batch must commit only work whose
results it returns.
"""

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _Call:
    __slots__ = ("args", "result", "done", "wakeup")

    def __init__(self, args: Any):
        self.args = args
        self.result = None
        self.done = False
        self.wakeup = threading.Lock()
        self.wakeup.acquire()  # released once: with the result, or to lead


class GroupCommit:
    def __init__(self, run_batch: Callable[[list], list], *, max_batch: int):
        self._run_batch = run_batch
        self._max_batch = max(1, max_batch)
        self._mutex = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._leading = False

    def submit(self, args: Any) -> Any:
        """Run `args` in a batch; returns its result, or None if the batch failed."""
        call = _Call(args)
        with self._mutex:
            if self._leading:
                self._queue.append(call)
                follow = True
            else:
                self._leading = True
                follow = False
        if follow:
            call.wakeup.acquire()
            if call.done:
                return call.result
        # This caller leads: its own call and as many queued ones as fit.
        with self._mutex:
            batch = [call]
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
        self._lead(batch)
        return call.result

    def _lead(self, batch: list[_Call]) -> None:
        results: list = [None] * len(batch)
        try:
            results = self._run_batch([call.args for call in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} returned {len(results)} results")
        except Exception:
            results = [None] * len(batch)
            log.warning("group commit of %d calls failed; each retries alone", len(batch), exc_info=True)
        finally:
            for call, result in zip(batch, results, strict=True):
                call.result = result
                call.done = True
            with self._mutex:
                # Hand the lead to the first waiter, or give it up.
                successor = self._queue.popleft() if self._queue else None
                self._leading = successor is not None
            for call in batch[1:]:
                call.wakeup.release()
            if successor is not None:
                successor.wakeup.release()
