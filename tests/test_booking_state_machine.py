"""Model-based test: any sequence of reserve / pay / fail / cancel / expire /
late pay / staff refund keeps the books straight after every step.

Stripe is modelled by a fake gateway that counts refunds (the real local
Stripe server is exercised by the late-payment and end-to-end tests).
"""

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from bookings import services as bookings
from bookings.models import Booking
from payments import gateway
from tests.factories import FanFactory, admit_directly, make_event
from ticketing.errors import ServiceError
from ticketing.selectors import event_inventory

TICKETS = 8


class FakeStripe:
    def __init__(self):
        self.refunds: dict[int, int] = {}

    def refund(self, *, payment_intent_id: str, booking_id: int) -> str:
        self.refunds[booking_id] = self.refunds.get(booking_id, 0) + 1
        return f"re_fake_{booking_id}_{self.refunds[booking_id]}"

    def cancel(self, payment_intent_id: str) -> str:
        return "canceled"


class BookingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.event = make_event(tickets=TICKETS, max_per_order=4)
        self.booking_ids: list[int] = []

    def _booking(self, index: int) -> Booking:
        return Booking.objects.get(pk=self.booking_ids[index % len(self.booking_ids)])

    @rule(quantity=st.integers(min_value=1, max_value=4))
    def reserve(self, quantity):
        fan = FanFactory()
        (token,) = admit_directly(event=self.event, fans=[fan])
        before = event_inventory(event_id=self.event.pk).available
        try:
            booking = bookings.reserve_tickets(event=self.event, fan=fan, quantity=quantity, access_token=token)
        except ServiceError as exc:
            assert exc.code == "not_enough_tickets" and quantity > before
            return
        Booking.objects.filter(pk=booking.pk).update(payment_intent_id=f"pi_fake_{booking.pk}")
        self.booking_ids.append(booking.pk)

    @precondition(lambda self: self.booking_ids)
    @rule(i=st.integers(min_value=0))
    def pay(self, i):
        booking = bookings.record_payment_succeeded(booking_id=self._booking(i).pk)
        if booking.needs_refund:
            bookings.refund_late_payment(booking_id=booking.pk)

    @precondition(lambda self: self.booking_ids)
    @rule(i=st.integers(min_value=0))
    def fail(self, i):
        bookings.record_payment_failed(booking_id=self._booking(i).pk)

    @precondition(lambda self: self.booking_ids)
    @rule(i=st.integers(min_value=0))
    def cancel(self, i):
        booking = self._booking(i)
        try:
            bookings.cancel_booking(booking_id=booking.pk, fan=booking.fan)
        except ServiceError as exc:
            assert exc.code == "not_cancellable" and booking.status != "processing"

    @precondition(lambda self: self.booking_ids)
    @rule(i=st.integers(min_value=0))
    def expire(self, i):
        booking = self._booking(i)
        Booking.objects.filter(pk=booking.pk).update(expires_at=timezone.now())
        bookings.expire_hold(booking_id=booking.pk)

    @precondition(lambda self: self.booking_ids)
    @rule(i=st.integers(min_value=0), return_tickets=st.booleans())
    def staff_refund(self, i, return_tickets):
        booking = self._booking(i)
        try:
            bookings.refund_booking(booking_id=booking.pk, return_tickets=return_tickets, staff_email="s@example.com")
        except ServiceError as exc:
            assert exc.code == "not_refundable" and booking.status != "succeeded"

    @invariant()
    def books_balance(self):
        inv = event_inventory(event_id=self.event.pk)
        assert inv.capacity == TICKETS
        assert min(inv.available, inv.held, inv.sold) >= 0
        assert inv.available + inv.held + inv.sold == TICKETS
        rows = list(Booking.objects.filter(event=self.event).values_list("status", "quantity", "holds_tickets"))
        assert inv.held == sum(q for s, q, _ in rows if s == "processing")
        assert inv.sold == sum(q for s, q, h in rows if h and s in ("succeeded", "refunded"))
        assert all(not h for s, _, h in rows if s in ("failed", "expired", "cancelled"))

    @invariant()
    def refunds_at_most_once(self):
        assert all(count == 1 for count in FAKE.refunds.values())
        refunded = Booking.objects.filter(event=self.event, status="refunded").values_list("pk", flat=True)
        assert all(FAKE.refunds.get(pk) == 1 for pk in refunded)


FAKE = FakeStripe()


@pytest.mark.django_db(transaction=True)
def test_bookings_keep_the_books_straight(monkeypatch):
    monkeypatch.setattr(gateway, "refund_payment_intent", FAKE.refund)
    monkeypatch.setattr(gateway, "cancel_payment_intent", FAKE.cancel)
    run_state_machine_as_test(
        BookingMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
