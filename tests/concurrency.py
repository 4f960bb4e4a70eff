"""Run callables at the same instant from separate threads (each thread gets
its own Django database connection)."""

import threading

from django.db import connection


def run_together(calls: list, *, threads: int | None = None) -> list:
    """Run every call, spread over `threads` threads lined up on a barrier.

    Returns each call's result or the exception it raised, in call order.
    """
    threads = min(threads or len(calls), len(calls))
    barrier = threading.Barrier(threads)
    results: list = [None] * len(calls)

    def worker(t: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(t, len(calls), threads):
                try:
                    results[i] = calls[i]()
                except Exception as exc:  # noqa: BLE001 - the caller inspects it
                    results[i] = exc
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    return results
