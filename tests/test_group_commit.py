"""Group commit: callers batched into shared transactions get exactly their
own results, and a batch never books for a caller it does not answer."""

import threading
import time

import pytest
from django.test import override_settings

from bookings import reservation
from bookings import services as bookings
from bookings.group_commit import GroupCommit
from bookings.models import Booking
from tests.concurrency import run_together
from tests.factories import FanFactory, admit_directly, make_event
from tests.test_inventory_concurrency import assert_books_balance, check_race, race_for_tickets
from ticketing.selectors import event_inventory
from waitlist.models import AccessToken, QueueEntry
from waitlist.tokens import read_token


class RecordingBatch:
    """A batch function that doubles its inputs, slowly enough for callers to pile up."""

    def __init__(self, *, fail_first: bool = False):
        self.sizes: list[int] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, args: list) -> list:
        with self.lock:
            self.sizes.append(len(args))
            failing = self.fail_first and len(self.sizes) == 1
        time.sleep(0.01)
        if failing:
            raise RuntimeError("database went away")
        return [a * 2 for a in args]


def submit_together(group: GroupCommit, count: int) -> list:
    return run_together([lambda i=i: group.submit(i) for i in range(count)])


def test_every_caller_gets_its_own_result_and_callers_share_batches():
    batch = RecordingBatch()
    group = GroupCommit(batch, max_batch=8)
    assert submit_together(group, 40) == [2 * i for i in range(40)]
    assert sum(batch.sizes) == 40
    assert max(batch.sizes) > 1, "concurrent callers were never batched"
    assert max(batch.sizes) <= 8


def test_a_failed_batch_answers_none_to_its_callers_and_the_next_batches_still_run():
    batch = RecordingBatch(fail_first=True)
    group = GroupCommit(batch, max_batch=4)
    results = submit_together(group, 20)
    failed = [r for r in results if r is None]
    assert len(failed) == batch.sizes[0]  # exactly the first batch's callers
    assert all(r is None or r == 2 * i for i, r in enumerate(results))
    assert group.submit(21) == 42  # the lead was handed back


def test_a_lone_caller_is_not_delayed():
    group = GroupCommit(lambda args: [a + 1 for a in args], max_batch=64)
    assert [group.submit(i) for i in range(3)] == [1, 2, 3]


pytestmark_db = pytest.mark.django_db(transaction=True)


def params_for(event, fan, token: str, quantity: int = 1) -> dict:
    claims = read_token(token)
    return reservation._statement_params(event=event, fan_id=fan.pk, quantity=quantity, token_id=claims.token_id)


@pytestmark_db
def test_one_batch_books_the_good_tokens_and_changes_nothing_for_the_rest():
    event = make_event(tickets=64, max_per_order=4)  # 4 per bucket: any order fits one
    other_event = make_event(tickets=10)
    fans = [FanFactory() for _ in range(4)]
    tokens = admit_directly(event=event, fans=fans)
    (foreign,) = admit_directly(event=other_event, fans=[fans[3]])
    AccessToken.objects.filter(pk=read_token(tokens[2]).token_id).update(expires_at="2000-01-01T00:00:00Z")

    rows = reservation._reserve_batch(
        [
            params_for(event, fans[0], tokens[0], quantity=2),
            params_for(event, fans[0], tokens[0], quantity=1),  # the same token again, same transaction
            params_for(event, fans[1], tokens[0]),  # another fan's token
            params_for(event, fans[2], tokens[2]),  # expired
            params_for(event, fans[3], foreign),  # a token for another event
            params_for(event, fans[1], tokens[1], quantity=4),
        ]
    )

    booked = [row is not None for row in rows]
    assert booked == [True, False, False, False, False, True]
    assert Booking.objects.filter(event=event).count() == 2
    assert event_inventory(event_id=event.pk).held == 6
    assert_books_balance(event)
    assert QueueEntry.objects.get(event=other_event, fan=fans[3]).state == "admitted"
    assert AccessToken.objects.get(pk=read_token(foreign).token_id).used_at is None


@pytestmark_db
def test_a_batch_keeps_to_the_bucket_it_locked_until_that_bucket_runs_dry():
    """Statements of one batch share a starting bucket, so a batch holds as few
    bucket locks as it can and the batches of other processes find buckets free."""
    event = make_event(tickets=64, max_per_order=4)  # 16 buckets of 4
    fans = [FanFactory() for _ in range(6)]
    tokens = admit_directly(event=event, fans=fans)
    rows = reservation._reserve_batch([params_for(event, fan, token) for fan, token in zip(fans, tokens, strict=True)])
    assert all(row is not None for row in rows)
    buckets = [Booking.objects.get(pk=row[0]).bucket for row in rows]
    # 4 tickets in the first bucket, then the next one in index order (wrapping after the last).
    assert len({b.pk for b in buckets[:4]}) == 1
    assert len({b.pk for b in buckets[4:]}) == 1
    assert buckets[4].index == (buckets[0].index + 1) % 16
    assert_books_balance(event)


@pytestmark_db
def test_refused_callers_of_a_batch_get_the_precise_error():
    event = make_event(tickets=3, max_per_order=4)
    fans = [FanFactory() for _ in range(3)]
    tokens = admit_directly(event=event, fans=fans)
    results = run_together(
        [
            lambda: bookings.reserve_tickets(event=event, fan=fans[0], quantity=3, access_token=tokens[0]),
            lambda: bookings.reserve_tickets(event=event, fan=fans[0], quantity=1, access_token=tokens[0]),
            lambda: bookings.reserve_tickets(event=event, fan=fans[1], quantity=1, access_token=tokens[0]),
            lambda: bookings.reserve_tickets(event=event, fan=fans[2], quantity=4, access_token=tokens[2]),
        ]
    )
    # The same token twice: whichever ran first books, the other is refused.
    winner, loser = sorted(results[:2], key=lambda r: not isinstance(r, Booking))
    assert isinstance(winner, Booking)
    assert getattr(loser, "code", None) == "token_used"
    assert getattr(results[2], "code", None) == "invalid_token"
    assert getattr(results[3], "code", None) == "not_enough_tickets"
    assert_books_balance(event)


@pytestmark_db
@pytest.mark.parametrize("group_commit", [True, False], ids=["batched", "one-transaction-each"])
def test_200_concurrent_reservations_never_oversell_batched_or_not(group_commit):
    with override_settings(RESERVATION_GROUP_COMMIT=group_commit):
        event, quantities, results = race_for_tickets(tickets=50, attempts=200, seed=11)
    check_race(event, quantities, results)
    assert event_inventory(event_id=event.pk).available <= 3


@pytestmark_db
def test_every_batched_hold_gets_its_expiry_scheduled(monkeypatch):
    scheduled: list[int] = []
    monkeypatch.setattr(reservation.batcher, "schedule", lambda *, booking_ids, due_at: scheduled.extend(booking_ids))
    event = make_event(tickets=100, max_per_order=2)
    fans = [FanFactory() for _ in range(30)]
    tokens = admit_directly(event=event, fans=fans)
    results = run_together(
        [
            lambda f=f, t=t: bookings.reserve_tickets(event=event, fan=f, quantity=2, access_token=t)
            for f, t in zip(fans, tokens, strict=True)
        ]
    )
    assert all(isinstance(r, Booking) for r in results), results
    assert sorted(scheduled) == sorted(r.pk for r in results)
    assert_books_balance(event)
