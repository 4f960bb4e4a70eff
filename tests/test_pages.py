"""The fans' server-rendered pages, through the Django test client.

Stripe is replaced by recording fakes of payments.gateway (the pages only
need to know what was asked of it); the API and webhook tests cover the
real exchanges with a Stripe server.
"""

import re
from datetime import timedelta

import pytest
import stripe
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings import services as booking_services
from bookings.models import Booking
from payments import gateway
from tests.factories import FanFactory, join_and_admit, make_event
from ticketing.selectors import event_inventory
from waitlist import services as queue_services
from waitlist.models import AccessToken, QueueEntry
from waitlist.tokens import read_token

PASSWORD = "correct horse battery"


class FakeStripe:
    def __init__(self):
        self.intents = 0
        self.cancelled: list[str] = []
        self.payments: list[dict] = []
        self.pay_result = "succeeded"

    def create_payment_intent(self, *, booking_id, amount, currency, event_name, attempt=1):
        self.intents += 1
        return f"pi_test_{booking_id}_{attempt}", f"pi_test_{booking_id}_{attempt}_secret_abc"

    def cancel_payment_intent(self, payment_intent_id):
        self.cancelled.append(payment_intent_id)
        return "canceled"

    def pay_with_test_card(self, **kwargs):
        self.payments.append(kwargs)
        return self.pay_result


@pytest.fixture(autouse=True)
def stripe_fake(monkeypatch):
    fake = FakeStripe()
    monkeypatch.setattr(gateway, "create_payment_intent", fake.create_payment_intent)
    monkeypatch.setattr(gateway, "cancel_payment_intent", fake.cancel_payment_intent)
    monkeypatch.setattr(gateway, "pay_with_test_card", fake.pay_with_test_card)
    return fake


@pytest.fixture(autouse=True)
def no_background_work(monkeypatch):
    # No Celery worker runs here: keep these tests from leaving admitter and
    # hold-expiry tasks in the shared broker for some later worker to find.
    monkeypatch.setattr("waitlist.broadcast.wake_admitter", lambda **kwargs: None)
    monkeypatch.setattr("bookings.services._schedule_expiry", lambda **kwargs: None)


@pytest.fixture
def site(fan) -> Client:
    client = Client()
    client.force_login(fan)
    return client


@pytest.fixture
def other_fan(db):
    return FanFactory()


def admit(*, event, fan) -> str:
    """Put the fan in line and let them in; returns their signed access token."""
    return join_and_admit(event=event, fan=fan)


def make_booking(*, event, fan, quantity: int = 2) -> Booking:
    token = admit(event=event, fan=fan)
    return booking_services.book_tickets(event=event, fan=fan, quantity=quantity, access_token=token)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def login_url(next_url: str) -> str:
    return f"{reverse('login')}?next={next_url}"


# Events


def test_event_list_shows_status_and_availability(client, event):
    closed = make_event(tickets=5, name="Closed show")
    closed.sale_closed = True
    closed.save()

    response = client.get(reverse("event-list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert event.name in html and reverse("event-detail", args=[event.pk]) in html
    assert "On sale" in html
    assert "10 of 10 available" in html
    assert "Closed show" in html and "Closed</span>" in html


def test_event_detail_offers_the_waiting_room(client, event):
    response = client.get(reverse("event-detail", args=[event.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "49.50 USD" in html
    assert "10 of 10" in html
    assert f'action="{reverse("queue-join", args=[event.pk])}"' in html
    assert "Join the waiting room" in html
    assert "csrfmiddlewaretoken" in html


def test_event_detail_says_when_every_ticket_is_held_not_sold(client, event):
    from django.db.models import F

    from ticketing.models import InventoryBucket

    InventoryBucket.objects.filter(event=event).update(held=F("available"), available=0)
    html = client.get(reverse("event-detail", args=[event.pk])).content.decode()

    assert "0 of 10 (10 held while fans pay)" in html
    assert "Every ticket is held by fans paying for them right now" in html
    assert "Join the waiting room" in html


def test_event_detail_of_a_missing_event_is_404(client, db):
    assert client.get(reverse("event-detail", args=[999999])).status_code == 404


def test_event_detail_sends_a_fan_in_line_back_to_their_place(site, fan, event):
    queue_services.join_queue(event=event, fan=fan)

    html = site.get(reverse("event-detail", args=[event.pk])).content.decode()

    assert "Go to the waiting room" in html
    assert "Join the waiting room" not in html


# Joining and the waiting room


def test_join_requires_login(client, event):
    response = client.post(reverse("queue-join", args=[event.pk]))

    assert response.status_code == 302
    assert response.url == login_url(reverse("event-detail", args=[event.pk]))
    assert not QueueEntry.objects.exists()


def test_join_is_post_only(site, event):
    assert site.get(reverse("queue-join", args=[event.pk])).status_code == 405
    assert not QueueEntry.objects.exists()


def test_join_puts_the_fan_in_line_and_opens_the_waiting_room(site, fan, event):
    response = site.post(reverse("queue-join", args=[event.pk]))

    assert response.status_code == 302
    assert response.url == reverse("waiting-room", args=[event.pk])
    assert QueueEntry.objects.filter(event=event, fan=fan, state=QueueEntry.State.WAITING).count() == 1

    page = site.get(response.url)
    assert page.status_code == 200
    html = page.content.decode()
    # Before the first admission tick the fan is in the pre-queue (no number yet).
    assert page.context["view_state"] == "prequeue"
    assert '<div data-show-when="prequeue">' in html
    assert f'"stream_url": "{reverse("queue-stream", args=[event.pk])}"' in html
    assert "new EventSource(status.stream_url)" in html
    assert f'action="{reverse("queue-leave", args=[event.pk])}"' in html
    assert "no-cache" in page["Cache-Control"]


def test_joining_twice_keeps_one_place(site, fan, event):
    site.post(reverse("queue-join", args=[event.pk]))
    site.post(reverse("queue-join", args=[event.pk]))

    assert QueueEntry.objects.filter(event=event, fan=fan).count() == 1


def test_join_refused_when_the_sale_is_closed(site, event):
    event.sale_closed = True
    event.save()

    response = site.post(reverse("queue-join", args=[event.pk]))

    assert response.status_code == 302
    assert response.url == reverse("event-detail", args=[event.pk])
    assert messages_of(response) == ["The sale for this event is closed."]
    assert not QueueEntry.objects.exists()


def test_waiting_room_shows_place_in_line(site, fan, event):
    queue_services.admit_fans(event_id=event.pk)  # opens the sale: later fans get numbers at once
    queue_services.join_queue(event=event, fan=fan)

    response = site.get(reverse("waiting-room", args=[event.pk]))

    assert response.status_code == 200
    assert response.context["view_state"] == "waiting"
    assert response.context["status"]["position"] == 1
    html = response.content.decode()
    assert '<dd data-field="position">1</dd>' in html
    assert '<dd data-field="ahead">0</dd>' in html
    assert f'href="{reverse("waiting-room", args=[event.pk])}"' in html  # refresh link without JS


def test_waiting_room_shows_the_booking_form_once_admitted(site, fan, event):
    token = admit(event=event, fan=fan)

    response = site.get(reverse("waiting-room", args=[event.pk]))

    assert response.context["view_state"] == "admitted"
    html = response.content.decode()
    assert '<div data-show-when="admitted">' in html
    assert f'action="{reverse("booking-create", args=[event.pk])}"' in html
    # The signed string carries its signing time, so compare what it names.
    shown = re.search(r'name="access_token" value="([^"]+)"', html).group(1)
    assert read_token(shown) == read_token(token)
    assert [f'<option value="{n}">' in html for n in range(1, 6)] == [True, True, True, True, False]


def test_waiting_room_shows_expired_and_closed_states(site, fan, event):
    admit(event=event, fan=fan)
    AccessToken.objects.filter(fan=fan).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = site.get(reverse("waiting-room", args=[event.pk]))
    assert response.context["view_state"] == "expired"
    assert "Join the line again" in response.content.decode()
    assert 'name="access_token" value=""' in response.content.decode()

    other = make_event(tickets=3, name="Other")
    queue_services.join_queue(event=other, fan=fan)
    other.sale_closed = True
    other.save()
    response = site.get(reverse("waiting-room", args=[other.pk]))
    assert response.context["view_state"] == "closed"
    assert '<div data-show-when="closed">' in response.content.decode()


def test_waiting_room_after_booking_points_to_the_bookings(site, fan, event):
    make_booking(event=event, fan=fan)

    response = site.get(reverse("waiting-room", args=[event.pk]))

    assert response.context["view_state"] == "booked"
    assert '<div data-show-when="booked">' in response.content.decode()
    assert reverse("booking-list") in response.content.decode()


def test_the_waiting_room_offers_to_join_again_only_once_the_booking_gave_its_tickets_back(site, fan, event):
    booking = make_booking(event=event, fan=fan)
    page = site.get(reverse("waiting-room", args=[event.pk])).content.decode()
    assert "Join the line again</button>" not in page.split('data-show-when="booked"')[1].split("</div>")[0]
    assert "cancel it to give the tickets back" in page

    booking_services.cancel_booking(booking_id=booking.pk, fan=fan)
    page = site.get(reverse("waiting-room", args=[event.pk])).content.decode()
    assert "Join the line again</button>" in page.split('data-show-when="booked"')[1].split("</div>")[0]


def test_joining_again_with_a_live_booking_says_why_nothing_changed(site, fan, event):
    make_booking(event=event, fan=fan)
    entry_before = QueueEntry.objects.get(event=event, fan=fan)

    response = site.post(reverse("queue-join", args=[event.pk]), follow=True)

    assert response.context["view_state"] == "booked"
    assert "still held or paid" in response.content.decode()
    entry_after = QueueEntry.objects.get(event=event, fan=fan)
    assert (entry_after.state, entry_after.number) == (entry_before.state, entry_before.number)


def test_waiting_room_requires_login(client, event):
    url = reverse("waiting-room", args=[event.pk])
    response = client.get(url)

    assert response.status_code == 302
    assert response.url == login_url(url)


def test_waiting_room_for_a_fan_not_in_line_goes_to_the_event(site, event):
    response = site.get(reverse("waiting-room", args=[event.pk]))

    assert response.status_code == 302
    assert response.url == reverse("event-detail", args=[event.pk])
    assert messages_of(response) == ["You are not in line for this event yet."]


def test_leave_gives_up_the_place(site, fan, event):
    queue_services.join_queue(event=event, fan=fan)

    response = site.post(reverse("queue-leave", args=[event.pk]))

    assert response.status_code == 302
    assert response.url == reverse("event-detail", args=[event.pk])
    assert QueueEntry.objects.get(event=event, fan=fan).state == QueueEntry.State.LEFT
    assert site.get(reverse("waiting-room", args=[event.pk])).status_code == 302


def test_leave_when_not_in_line_changes_nothing(site, event):
    response = site.post(reverse("queue-leave", args=[event.pk]))

    assert response.status_code == 302
    assert messages_of(response) == ["You are not in line for this event."]
    assert not QueueEntry.objects.exists()


def test_leave_requires_login_and_post(client, site, event):
    assert client.post(reverse("queue-leave", args=[event.pk])).status_code == 302
    assert site.get(reverse("queue-leave", args=[event.pk])).status_code == 405


# Booking from the waiting room


def test_booking_holds_tickets_and_goes_to_the_pay_page(site, fan, event, stripe_fake):
    token = admit(event=event, fan=fan)

    response = site.post(reverse("booking-create", args=[event.pk]), {"quantity": "3", "access_token": token})

    booking = Booking.objects.get(fan=fan)
    assert response.status_code == 302
    assert response.url == reverse("booking-pay", kwargs={"booking_id": booking.pk})
    assert (booking.status, booking.quantity, str(booking.amount)) == ("processing", 3, "148.50")
    assert booking.payment_intent_id == f"pi_test_{booking.pk}_1"
    assert event_inventory(event_id=event.pk).held == 3


@pytest.mark.parametrize("quantity", ["", "abc", "1.5", "0", "5", "-1"])
def test_booking_with_a_bad_quantity_changes_nothing(site, fan, event, stripe_fake, quantity):
    token = admit(event=event, fan=fan)

    response = site.post(reverse("booking-create", args=[event.pk]), {"quantity": quantity, "access_token": token})

    assert response.status_code == 302
    assert response.url == reverse("waiting-room", args=[event.pk])
    assert messages_of(response) == ["Choose between 1 and 4 tickets."]
    assert not Booking.objects.exists()
    assert AccessToken.objects.get(fan=fan).used_at is None
    assert event_inventory(event_id=event.pk).available == 10
    assert stripe_fake.intents == 0


def test_booking_with_a_bad_token_changes_nothing(site, fan, event):
    admit(event=event, fan=fan)

    response = site.post(reverse("booking-create", args=[event.pk]), {"quantity": "1", "access_token": "forged"})

    assert response.url == reverse("waiting-room", args=[event.pk])
    assert messages_of(response) == ["This access token is not valid."]
    assert not Booking.objects.exists()


def test_booking_with_another_fans_token_is_refused(site, other_fan, event):
    token = admit(event=event, fan=other_fan)

    response = site.post(reverse("booking-create", args=[event.pk]), {"quantity": "1", "access_token": token})

    assert messages_of(response) == ["This access token is not valid for you and this event."]
    assert not Booking.objects.exists()
    assert AccessToken.objects.get(fan=other_fan).used_at is None


def test_booking_requires_login(client, fan, event):
    token = admit(event=event, fan=fan)

    response = client.post(reverse("booking-create", args=[event.pk]), {"quantity": "1", "access_token": token})

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert not Booking.objects.exists()


# Bookings


def test_booking_list_shows_only_the_fans_own(site, fan, other_fan, event):
    mine = make_booking(event=event, fan=fan, quantity=1)
    theirs = make_booking(event=event, fan=other_fan, quantity=2)

    response = site.get(reverse("booking-list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("booking-detail", args=[mine.pk]) in html
    assert reverse("booking-detail", args=[theirs.pk]) not in html
    assert reverse("booking-pay", kwargs={"booking_id": mine.pk}) in html


def test_booking_list_requires_login(client, db):
    assert client.get(reverse("booking-list")).url == login_url(reverse("booking-list"))


def test_booking_detail_while_processing(site, fan, event):
    booking = make_booking(event=event, fan=fan)

    response = site.get(reverse("booking-detail", args=[booking.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Processing" in html and "99.00 USD" in html
    assert f'data-until="{int(booking.expires_at.timestamp())}000"' in html
    assert f'action="{reverse("booking-cancel", args=[booking.pk])}"' in html
    assert reverse("booking-pay", kwargs={"booking_id": booking.pk}) in html
    assert f'"url": "{reverse("api-booking", args=[booking.pk])}"' in html


def test_booking_detail_of_an_ended_booking_does_not_poll(site, fan, event):
    booking = make_booking(event=event, fan=fan)
    booking_services.record_payment_succeeded(booking_id=booking.pk)

    html = site.get(reverse("booking-detail", args=[booking.pk])).content.decode()

    assert "You have 2 tickets" in html
    assert "booking-poll" not in html
    assert reverse("booking-cancel", args=[booking.pk]) not in html


def test_another_fans_booking_is_404(site, other_fan, event):
    booking = make_booking(event=event, fan=other_fan)

    assert site.get(reverse("booking-detail", args=[booking.pk])).status_code == 404
    assert site.get(reverse("booking-pay", kwargs={"booking_id": booking.pk})).status_code == 404
    assert site.post(reverse("booking-cancel", args=[booking.pk])).status_code == 404
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PROCESSING


def test_booking_detail_requires_login(client, fan, event):
    booking = make_booking(event=event, fan=fan)
    url = reverse("booking-detail", args=[booking.pk])

    assert client.get(url).url == login_url(url)


def test_cancel_returns_the_tickets(site, fan, event, stripe_fake):
    booking = make_booking(event=event, fan=fan)

    response = site.post(reverse("booking-cancel", args=[booking.pk]))

    assert response.url == reverse("booking-detail", args=[booking.pk])
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELLED
    assert stripe_fake.cancelled == [booking.payment_intent_id]
    assert event_inventory(event_id=event.pk).available == 10
    assert "was cancelled" in site.get(response.url).content.decode()


def test_cancel_of_an_ended_booking_changes_nothing(site, fan, event, stripe_fake):
    booking = make_booking(event=event, fan=fan)
    booking_services.record_payment_succeeded(booking_id=booking.pk)

    response = site.post(reverse("booking-cancel", args=[booking.pk]))

    assert messages_of(response) == ["This booking can no longer be cancelled (its status is succeeded)."]
    booking.refresh_from_db()
    assert booking.status == Booking.Status.SUCCEEDED
    assert stripe_fake.cancelled == []


def test_cancel_requires_login_and_post(client, site, fan, event):
    booking = make_booking(event=event, fan=fan)

    assert client.post(reverse("booking-cancel", args=[booking.pk])).status_code == 302
    assert site.get(reverse("booking-cancel", args=[booking.pk])).status_code == 405
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PROCESSING


# Paying


NEXT_YEAR = timezone.now().year + 1
CARD = {"card_number": "4242 4242 4242 4242", "exp_month": "12", "exp_year": str(NEXT_YEAR), "cvc": "123"}


def test_pay_page_offers_the_test_card_form(site, fan, event):
    booking = make_booking(event=event, fan=fan)

    response = site.get(reverse("booking-pay", kwargs={"booking_id": booking.pk}))

    assert response.status_code == 200
    html = response.content.decode()
    for name in ("card_number", "exp_month", "exp_year", "cvc"):
        assert f'name="{name}"' in html
    assert "4242 4242 4242 4242" in html and "4000 0000 0000 0341" in html
    assert "js.stripe.com" not in html
    assert "no-cache" in response["Cache-Control"]


def test_pay_page_requires_login(client, fan, event):
    booking = make_booking(event=event, fan=fan)
    url = reverse("booking-pay", kwargs={"booking_id": booking.pk})

    assert client.get(url).url == login_url(url)
    assert client.post(url, CARD).status_code == 302


def test_paying_sends_the_card_and_goes_to_the_booking(site, fan, event, stripe_fake):
    booking = make_booking(event=event, fan=fan)

    response = site.post(reverse("booking-pay", kwargs={"booking_id": booking.pk}), CARD)

    assert response.status_code == 302
    assert response.url == reverse("booking-detail", args=[booking.pk])
    assert stripe_fake.payments == [
        {
            "payment_intent_id": booking.payment_intent_id,
            "number": "4242424242424242",
            "exp_month": 12,
            "exp_year": NEXT_YEAR,
            "cvc": "123",
        }
    ]
    # The webhook, not the pay page, moves the booking.
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PROCESSING


def test_a_declined_card_says_so(site, fan, event, stripe_fake):
    booking = make_booking(event=event, fan=fan)
    stripe_fake.pay_result = "requires_payment_method"

    response = site.post(
        reverse("booking-pay", kwargs={"booking_id": booking.pk}), {**CARD, "exp_year": str(NEXT_YEAR % 100)}
    )

    assert stripe_fake.payments[0]["exp_year"] == NEXT_YEAR
    assert messages_of(response)[0].startswith("Your card was declined, so your tickets are going back on sale.")


@pytest.mark.parametrize(
    "change, error",
    [
        ({"card_number": "4242"}, "Enter the card number as 12 to 19 digits."),
        ({"card_number": "4242-abcd-4242-4242"}, "Enter the card number as 12 to 19 digits."),
        ({"exp_month": "13"}, "The expiry month must be between 1 and 12."),
        ({"exp_month": "x"}, "Enter a whole number."),
        ({"exp_year": "2001"}, "This card has expired or the expiry year is not valid."),
        ({"exp_year": "3000"}, "This card has expired or the expiry year is not valid."),
        ({"cvc": "12"}, "The CVC is the 3 or 4 digits on the back of the card."),
        ({"cvc": ""}, "This field is required."),
    ],
)
def test_a_bad_card_shows_an_error_and_changes_nothing(site, fan, event, stripe_fake, change, error):
    booking = make_booking(event=event, fan=fan)

    response = site.post(reverse("booking-pay", kwargs={"booking_id": booking.pk}), {**CARD, **change})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert 'name="card_number"' in response.content.decode()
    assert stripe_fake.payments == []
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PROCESSING


@pytest.mark.parametrize(
    "error, shown",
    [
        (stripe.InvalidRequestError("No such payment_intent", None), "cannot take a payment now"),
        (stripe.APIConnectionError("connection refused"), "could not take this payment right now"),
    ],
)
def test_a_payment_server_refusal_is_shown_on_the_form(site, fan, event, monkeypatch, error, shown):
    booking = make_booking(event=event, fan=fan)

    def refuse(**kwargs):
        raise error

    monkeypatch.setattr(gateway, "pay_with_test_card", refuse)
    response = site.post(reverse("booking-pay", kwargs={"booking_id": booking.pk}), CARD)

    assert response.status_code == 200
    assert shown in response.content.decode()
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PROCESSING


def test_a_booking_that_ended_shows_its_status_instead_of_the_form(site, fan, event, stripe_fake):
    booking = make_booking(event=event, fan=fan)
    site.post(reverse("booking-cancel", args=[booking.pk]))
    url = reverse("booking-pay", kwargs={"booking_id": booking.pk})

    html = site.get(url).content.decode()
    assert "This booking cannot be paid: its status is cancelled." in html
    assert 'name="card_number"' not in html

    response = site.post(url, CARD)
    assert "This booking cannot be paid: its status is cancelled." in response.content.decode()
    assert stripe_fake.payments == []


def test_a_declined_booking_can_be_paid_with_another_card_until_its_hold_would_end(site, fan, event, stripe_fake):
    booking = make_booking(event=event, fan=fan)
    booking_services.record_payment_failed(booking_id=booking.pk)
    url = reverse("booking-pay", kwargs={"booking_id": booking.pk})

    assert 'name="card_number"' in site.get(url).content.decode()
    assert "Try another card" in site.get(reverse("booking-detail", args=[booking.pk])).content.decode()
    assert site.post(url, CARD).status_code == 302
    assert len(stripe_fake.payments) == 1
    # The declined intent was replaced by a fresh one, which took the payment.
    booking.refresh_from_db()
    assert stripe_fake.payments[0]["payment_intent_id"] == booking.payment_intent_id == f"pi_test_{booking.pk}_2"
    assert booking.previous_payment_intents == [f"pi_test_{booking.pk}_1"]

    Booking.objects.filter(pk=booking.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "This booking cannot be paid: its status is failed." in site.get(url).content.decode()
    site.post(url, CARD)
    assert len(stripe_fake.payments) == 1


def test_with_real_stripe_keys_the_page_uses_stripe_js(site, fan, event, stripe_fake, settings):
    settings.STRIPE_LOCAL = False
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_realistic"
    booking = make_booking(event=event, fan=fan)
    url = reverse("booking-pay", kwargs={"booking_id": booking.pk})

    html = site.get(url).content.decode()

    assert '<script src="https://js.stripe.com/v3/"></script>' in html
    assert '"publishableKey": "pk_test_realistic"' in html
    assert f'"clientSecret": "{booking.client_secret}"' in html
    assert f'"returnUrl": "http://testserver{reverse("booking-detail", args=[booking.pk])}"' in html
    assert 'name="card_number"' not in html

    site.post(url, CARD)
    assert stripe_fake.payments == []


# Accounts


def test_signup_creates_the_fan_and_logs_them_in(client, db):
    response = client.post(reverse("signup"), {"email": " New.Fan@Example.com ", "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == reverse("event-list")
    user = get_user_model().objects.get()
    assert user.username == user.email == "new.fan@example.com"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_signup_follows_a_safe_next_only(client, db):
    response = client.post(reverse("signup") + "?next=/bookings/", {"email": "a@example.com", "password": PASSWORD})
    assert response.url == "/bookings/"

    response = Client().post(
        reverse("signup"), {"email": "b@example.com", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response.url == reverse("event-list")


@pytest.mark.parametrize(
    "data, error",
    [
        ({"email": "not-an-email", "password": PASSWORD}, "Enter a valid email address."),
        ({"email": "fan@example.com", "password": "short"}, "This password is too short."),
        ({"email": "fan@example.com", "password": "password123"}, "This password is too common."),
        ({"email": "", "password": PASSWORD}, "This field is required."),
    ],
)
def test_signup_with_bad_input_shows_an_error(client, db, data, error):
    response = client.post(reverse("signup"), data)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not get_user_model().objects.exists()
    assert "_auth_user_id" not in client.session


def test_signup_with_a_taken_email_shows_an_error(client, fan):
    response = client.post(reverse("signup"), {"email": fan.email.upper(), "password": PASSWORD})

    assert response.status_code == 200
    assert "An account with this email already exists." in response.content.decode()
    assert get_user_model().objects.count() == 1


def test_login_by_email_in_any_case(client, fan):
    assert client.get(reverse("login")).status_code == 200

    response = client.post(reverse("login"), {"username": fan.email.upper(), "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == reverse("event-list")
    assert client.session["_auth_user_id"] == str(fan.pk)


def test_login_with_a_wrong_password_shows_an_error(client, fan):
    response = client.post(reverse("login"), {"username": fan.email, "password": "wrong password"})

    assert response.status_code == 200
    assert "Wrong email or password." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout(site):
    html = site.get(reverse("event-list")).content.decode()
    assert f'action="{reverse("logout")}"' in html

    response = site.post(reverse("logout"))

    assert response.url == reverse("event-list")
    assert "_auth_user_id" not in site.session
