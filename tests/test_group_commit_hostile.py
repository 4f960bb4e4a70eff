"""Hostile tests of the group-commit reservation path."""

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from bookings import reservation
from bookings.expiry import batcher
from bookings.models import Booking
from tests.concurrency import run_together
from tests.factories import FanFactory, admit_directly, make_event
from ticketing.errors import Conflict, Forbidden
from ticketing.selectors import event_inventory
from waitlist import services as waitlist
from waitlist.models import AccessToken, QueueEntry

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 30


def balance(event):
    inv = event_inventory(event_id=event.pk)
    assert inv.available + inv.held + inv.sold == inv.capacity == event.capacity, inv
    assert min(inv.available, inv.held, inv.sold) >= 0, inv
    promised = sum(Booking.objects.filter(event=event, status="processing").values_list("quantity", flat=True))
    assert inv.held == promised, (inv, promised)
    return inv


@pytest.fixture
def scheduled(monkeypatch):
    ids = []
    lock = threading.Lock()

    def schedule(*, booking_ids, due_at):
        with lock:
            ids.extend(booking_ids)

    monkeypatch.setattr(batcher, "schedule", schedule)
    return ids


@pytest.fixture
def counters(monkeypatch):
    """Count general-path calls and batch sizes; make the first batch slow so the rest pile up."""
    c = {"general": 0, "batches": [], "batch_errors": 0}
    lock = threading.Lock()
    orig_general = reservation._reserve_general
    orig_batch = reservation._group_commit._run_batch

    def general(**kw):
        with lock:
            c["general"] += 1
        return orig_general(**kw)

    def run_batch(batch):
        with lock:
            first = not c["batches"]
            c["batches"].append(len(batch))
        if first:
            time.sleep(0.5)
        try:
            return orig_batch(batch)
        except Exception:
            with lock:
                c["batch_errors"] += 1
            raise

    monkeypatch.setattr(reservation, "_reserve_general", general)
    monkeypatch.setattr(reservation._group_commit, "_run_batch", run_batch)
    return c


def reserve(event, fan, q, token):
    return lambda: reservation.reserve_tickets(event=event, fan=fan, quantity=q, access_token=token)


def test_same_token_30_times_in_one_batch(scheduled, counters):
    event = make_event(tickets=100)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    results = run_together([reserve(event, fan, 1, token) for _ in range(THREADS)])
    booked = [r for r in results if isinstance(r, Booking)]
    assert len(booked) == 1, results
    assert {getattr(r, "code", repr(r)) for r in results if not isinstance(r, Booking)} == {"token_used"}
    assert Booking.objects.filter(event=event).count() == 1
    assert sorted(scheduled) == [booked[0].pk]
    balance(event)
    print("batches", counters)


def test_mixed_batch_valid_used_expired_left_other_event(scheduled, counters):
    event = make_event(tickets=200)
    other = make_event(tickets=50, name="Other")
    fans = [FanFactory() for _ in range(24)]
    tokens = admit_directly(event=event, fans=fans)
    other_tokens = admit_directly(event=other, fans=fans[:4])
    now = timezone.now()
    # fans 0..3: expired beyond leeway; 4..7: already used (booked once before); 8..11: left the line
    for t in AccessToken.objects.filter(event=event, fan__in=fans[0:4]):
        AccessToken.objects.filter(pk=t.pk).update(expires_at=now - timedelta(seconds=60))
    for f in fans[4:8]:
        reservation.reserve_tickets(event=event, fan=f, quantity=1, access_token=tokens[fans.index(f)])
    for f in fans[8:12]:
        waitlist.leave_queue(event=event, fan=f)
    scheduled.clear()
    before_ids = set(Booking.objects.values_list("id", flat=True))
    calls, expect = [], []
    for i, f in enumerate(fans):
        calls.append(reserve(event, f, 2, tokens[i]))
        expect.append("token_expired" if i < 4 else "token_used" if i < 8 else "invalid_token" if i < 12 else "ok")
    for i in range(4):  # the same fans, other event, valid tokens
        calls.append(reserve(other, fans[i], 3, other_tokens[i]))
        expect.append("ok")
    for i in range(4):  # a fan's token for the wrong event (claims mismatch)
        calls.append(reserve(event, fans[12 + i], 1, other_tokens[i]))
        expect.append("invalid_token")
    results = run_together(calls, threads=THREADS)
    got = ["ok" if isinstance(r, Booking) else getattr(r, "code", repr(r)) for r in results]
    # fans 12..15 may book either with their own token (ok) or be refused with the other's token
    assert got == expect, list(zip(got, expect, strict=True))
    new = set(Booking.objects.values_list("id", flat=True)) - before_ids
    assert new == {r.pk for r in results if isinstance(r, Booking)}
    assert set(scheduled) == new
    balance(event)
    balance(other)
    for r in results:
        if isinstance(r, Booking):
            db = Booking.objects.get(pk=r.pk)
            for f in Booking._meta.concrete_fields:
                assert getattr(r, f.attname) == getattr(db, f.attname), f.name
    print("batches", counters)


def test_sold_out_exactness_17_over_16_buckets(scheduled, counters):
    event = make_event(tickets=17)
    fans = [FanFactory() for _ in range(THREADS)]
    tokens = admit_directly(event=event, fans=fans)
    results = run_together([reserve(event, f, 2, t) for f, t in zip(fans, tokens, strict=True)])
    won = [r for r in results if isinstance(r, Booking)]
    lost = [r for r in results if not isinstance(r, Booking)]
    assert all(isinstance(r, Conflict) and r.code == "not_enough_tickets" for r in lost), lost
    assert len(won) == 8
    inv = balance(event)
    assert inv.available == 1
    assert set(scheduled) == {b.pk for b in won}
    print("batches", counters)


def test_poisoned_statement_in_batch(scheduled, counters):
    """One statement of the batch violates the one-booking-per-token unique constraint."""
    event = make_event(tickets=100)
    fans = [FanFactory() for _ in range(THREADS)]
    tokens = admit_directly(event=event, fans=fans)
    # fan 0 booked earlier; its token is then made to look unused (stale used_at)
    b0 = reservation.reserve_tickets(event=event, fan=fans[0], quantity=1, access_token=tokens[0])
    AccessToken.objects.filter(pk=b0.access_token_id).update(used_at=None)
    QueueEntry.objects.filter(tokens__pk=b0.access_token_id).update(state="admitted")
    scheduled.clear()
    results = run_together([reserve(event, f, 1, t) for f, t in zip(fans, tokens, strict=True)])
    print([type(r).__name__ for r in results])
    assert not isinstance(results[0], Booking)
    assert all(isinstance(r, Booking) for r in results[1:]), results
    assert Booking.objects.filter(event=event).count() == THREADS
    assert set(scheduled) == {r.pk for r in results[1:]}
    balance(event)
    print("batches", counters)
    # after the failed pipeline the fast path must still work on those connections
    fans2 = [FanFactory() for _ in range(THREADS)]
    tokens2 = admit_directly(event=event, fans=fans2)
    g0 = counters["general"]
    e0 = counters["batch_errors"]
    results = run_together([reserve(event, f, 1, t) for f, t in zip(fans2, tokens2, strict=True)])
    assert all(isinstance(r, Booking) for r in results), results
    assert counters["batch_errors"] == e0, counters
    assert counters["general"] == g0, counters
    balance(event)


def test_leave_while_booking(scheduled):
    """leave_queue commits while the reservation waits for the token it locked."""
    from django.db import transaction

    event = make_event(tickets=10)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    out = {}
    left_locked = threading.Event()

    def leave():
        try:
            with transaction.atomic():
                waitlist.leave_queue(event=event, fan=fan)
                left_locked.set()
                time.sleep(1.0)  # still uncommitted: the reservation starts meanwhile
            out["leave"] = "ok"
        except Exception as exc:  # noqa: BLE001
            out["leave"] = exc
        finally:
            connection.close()

    def book():
        left_locked.wait(5)
        try:
            out["book"] = reservation.reserve_tickets(event=event, fan=fan, quantity=1, access_token=token)
        except Exception as exc:  # noqa: BLE001
            out["book"] = exc
        finally:
            connection.close()

    ts = [threading.Thread(target=leave), threading.Thread(target=book)]
    [t.start() for t in ts]
    [t.join(30) for t in ts]
    entry = QueueEntry.objects.get(event=event, fan=fan)
    print(out, entry.state)
    balance(event)
    # serial outcomes: leave then book -> booking refused; book then leave -> entry 'left'
    assert out["leave"] == "ok"
    assert not isinstance(out["book"], Booking) or entry.state == "left", (out, entry.state)


def _two_live_tokens_for_one_entry(event, fan):
    """A fan whose token expired 2 s ago (inside the 5 s leeway) rejoined and was admitted again."""
    (t1,) = admit_directly(event=event, fans=[fan])
    now = timezone.now()
    AccessToken.objects.filter(fan=fan, event=event).update(expires_at=now - timedelta(seconds=2))
    entry = QueueEntry.objects.get(event=event, fan=fan)
    assert waitlist.turn_is_over(entry)  # so join_queue requeues it
    QueueEntry.objects.filter(pk=entry.pk).update(state="admitted", admitted_at=now)  # re-admitted
    tok2 = AccessToken.objects.create(
        entry=entry, event=event, fan=fan, issued_at=now, expires_at=now + timedelta(minutes=5)
    )
    from waitlist.tokens import sign_token

    return t1, sign_token(token_id=tok2.id, event_id=event.pk, fan_id=fan.pk)


def test_one_admission_two_tokens_sequential(scheduled):
    event = make_event(tickets=10)
    fan = FanFactory()
    t1, t2 = _two_live_tokens_for_one_entry(event, fan)
    reservation.reserve_tickets(event=event, fan=fan, quantity=4, access_token=t2)
    with pytest.raises(Forbidden):
        reservation.reserve_tickets(event=event, fan=fan, quantity=4, access_token=t1)


def test_one_admission_two_tokens_two_processes(scheduled, settings):
    """Two web processes (no shared group commit) each get one of the fan's tokens."""
    settings.RESERVATION_GROUP_COMMIT = False
    event = make_event(tickets=10)
    fan = FanFactory()
    t1, t2 = _two_live_tokens_for_one_entry(event, fan)
    results = run_together([reserve(event, fan, 4, t1), reserve(event, fan, 4, t2)])
    print(results)
    balance(event)
    assert sum(isinstance(r, Booking) for r in results) == 1, results


def test_after_commit_hook_failure_loses_holds(monkeypatch, counters):
    """If anything raises after the batch committed (here: starting the expiry thread fails),
    GroupCommit hands every caller None and they retry a token that is already spent."""
    calls = [0]

    def schedule(*, booking_ids, due_at):
        calls[0] += 1
        if calls[0] == 2:  # the big batch (the first call is the slow leader alone)
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(batcher, "schedule", schedule)
    event = make_event(tickets=100)
    fans = [FanFactory() for _ in range(10)]
    tokens = admit_directly(event=event, fans=fans)
    results = run_together([reserve(event, f, 1, t) for f, t in zip(fans, tokens, strict=True)])
    got = [type(r).__name__ + ":" + getattr(r, "code", "") for r in results]
    print(got, counters)
    booked_rows = Booking.objects.filter(event=event).count()
    returned = sum(isinstance(r, Booking) for r in results)
    assert booked_rows == returned, f"{booked_rows} bookings committed, {returned} returned to callers: {got}"


def test_deallocate_all_then_fast_path(scheduled, counters):
    event = make_event(tickets=100)
    fans = [FanFactory() for _ in range(12)]
    tokens = admit_directly(event=event, fans=fans)
    for f, t in zip(fans[:8], tokens[:8], strict=True):
        reservation.reserve_tickets(event=event, fan=f, quantity=1, access_token=t)
    for stmt in ("DEALLOCATE ALL", "DISCARD ALL"):
        with connection.cursor() as c:
            c.execute(stmt)
        e0 = counters["batch_errors"]
        f, t = fans[8 + (stmt == "DISCARD ALL")], tokens[8 + (stmt == "DISCARD ALL")]
        b = reservation.reserve_tickets(event=event, fan=f, quantity=1, access_token=t)
        assert isinstance(b, Booking)
        assert counters["batch_errors"] == e0, stmt
    balance(event)


def _params(event, fan, token_str, n=1):
    from django.conf import settings as s

    from waitlist.tokens import read_token

    return {
        "token": read_token(token_str).token_id,
        "fan": fan.pk,
        "event": event.pk,
        "n": n,
        "leeway": s.ACCESS_TOKEN_LEEWAY_SECONDS,
        "price": event.price,
        "amount": event.price * n,
        "currency": event.currency,
        "hold": s.HOLD_SECONDS,
    }


@pytest.mark.parametrize("poison_at", [0, 2, 4, 5, 6, 9])
def test_failed_pipeline_then_reuse_connection(scheduled, poison_at):
    event = make_event(tickets=200)
    fans = [FanFactory() for _ in range(40)]
    tokens = admit_directly(event=event, fans=fans)
    connection.close()  # fresh connection from the pool
    connection.ensure_connection()
    b0 = reservation.reserve_tickets(event=event, fan=fans[0], quantity=1, access_token=tokens[0])
    AccessToken.objects.filter(pk=b0.access_token_id).update(used_at=None)
    QueueEntry.objects.filter(tokens__pk=b0.access_token_id).update(state="admitted")
    batch = [_params(event, f, t) for f, t in zip(fans[1:10], tokens[1:10], strict=True)]
    batch.insert(poison_at, _params(event, fans[0], tokens[0]))
    with pytest.raises((IntegrityError, psycopg.IntegrityError)):
        reservation._reserve_batch(batch)
    assert Booking.objects.filter(event=event).count() == 1
    for k in range(3):
        rows = reservation._reserve_batch(
            [
                _params(event, f, t)
                for f, t in zip(fans[10 + 10 * k : 20 + 10 * k], tokens[10 + 10 * k : 20 + 10 * k], strict=True)
            ]
        )
        assert all(r is not None for r in rows)
    balance(event)


def test_same_token_many_processes(scheduled, settings):
    settings.RESERVATION_GROUP_COMMIT = False
    event = make_event(tickets=100)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    results = run_together([reserve(event, fan, 2, token) for _ in range(THREADS)])
    assert sum(isinstance(r, Booking) for r in results) == 1
    assert {getattr(r, "code", repr(r)) for r in results if not isinstance(r, Booking)} == {"token_used"}
    balance(event)


def test_200_mixed_quantities_17_tickets(scheduled):
    import random

    event = make_event(tickets=17)
    fans = [FanFactory() for _ in range(120)]
    tokens = admit_directly(event=event, fans=fans)
    qs = [random.Random(i).randint(1, 4) for i in range(120)]
    results = run_together([reserve(event, f, q, t) for f, q, t in zip(fans, qs, tokens, strict=True)], threads=THREADS)
    won = [q for q, r in zip(qs, results, strict=True) if isinstance(r, Booking)]
    lost = [(q, r) for q, r in zip(qs, results, strict=True) if not isinstance(r, Booking)]
    assert all(isinstance(r, Conflict) and r.code == "not_enough_tickets" for _, r in lost), lost
    inv = balance(event)
    assert all(q > inv.available for q, _ in lost)
    assert inv.held == sum(won)
    assert sorted(scheduled) == sorted(r.pk for r in results if isinstance(r, Booking))


def test_mixed_param_types_in_one_pipeline(scheduled):
    """Small and large ids in one executemany: psycopg dumps ints as int2/int4/int8 by value."""
    from django.contrib.auth import get_user_model

    event = make_event(tickets=400)
    small = [FanFactory() for _ in range(30)]
    with connection.cursor() as c:
        c.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), 40000)", [get_user_model()._meta.db_table])
    big = [FanFactory() for _ in range(30)]
    assert big[0].pk > 32767
    ts_small = admit_directly(event=event, fans=small)
    ts_big = admit_directly(event=event, fans=big)
    connection.close()
    for k in range(6):
        batch = []
        for j in range(5):
            i = 5 * k + j
            batch.append(_params(event, small[i], ts_small[i], n=1 + (i % 4)))
            batch.append(_params(event, big[i], ts_big[i], n=1 + (i % 4)))
        rows = reservation._reserve_batch(batch)
        assert all(r is not None for r in rows), (k, rows)
    balance(event)
    assert Booking.objects.filter(event=event).count() == 60


def test_leave_while_booking_no_leeway(scheduled, settings):
    settings.ACCESS_TOKEN_LEEWAY_SECONDS = 0
    test_leave_while_booking.__wrapped__(scheduled) if hasattr(
        test_leave_while_booking, "__wrapped__"
    ) else test_leave_while_booking(scheduled)


def test_one_admission_two_tokens_one_process_group_commit(scheduled, counters):
    event = make_event(tickets=10)
    fan = FanFactory()
    t1, t2 = _two_live_tokens_for_one_entry(event, fan)
    results = run_together([reserve(event, fan, 4, t1), reserve(event, fan, 4, t2)])
    print(results, counters)
    balance(event)
    assert sum(isinstance(r, Booking) for r in results) == 1, results
