"""GroupCommit itself, without a database."""

import random
import threading
import time

from bookings.group_commit import GroupCommit


def test_stress_every_caller_gets_its_own_result():
    seen = []
    lock = threading.Lock()
    active = [0]

    def run(batch):
        with lock:
            active[0] += 1
            assert active[0] == 1, "two leaders at once"
            seen.append(len(batch))
        time.sleep(random.random() * 0.002)
        if random.random() < 0.1:
            with lock:
                active[0] -= 1
            raise RuntimeError("boom")
        with lock:
            active[0] -= 1
        return [("ok", a) for a in batch]

    gc = GroupCommit(run, max_batch=7)
    results = {}

    def worker(t):
        for i in range(300):
            r = gc.submit((t, i))
            assert r is None or r == ("ok", (t, i)), r
            results[(t, i)] = r

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(40)]
    [t.start() for t in ts]
    [t.join(60) for t in ts]
    assert not any(t.is_alive() for t in ts), "a caller never woke"
    assert len(results) == 40 * 300
    assert max(seen) <= 7 and max(seen) > 1


def test_leader_base_exception_wakes_everyone():
    calls = [0]

    def run(batch):
        calls[0] += 1
        if calls[0] == 1:
            time.sleep(0.2)
            raise KeyboardInterrupt
        return [1] * len(batch)

    gc = GroupCommit(run, max_batch=64)
    out = {}

    def worker(t):
        try:
            out[t] = gc.submit(t)
        except BaseException as exc:  # noqa: BLE001
            out[t] = exc

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
    ts[0].start()
    time.sleep(0.05)
    [t.start() for t in ts[1:]]
    [t.join(5) for t in ts]
    assert not any(t.is_alive() for t in ts)
    print(out)
