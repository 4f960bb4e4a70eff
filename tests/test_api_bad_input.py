"""Every bad input on every endpoint of API.md: the documented 4xx, a JSON body
`{"error": code, "detail": sentence}`, never a 500, and nothing changed in
the database.

Requests go through DRF's APIClient in this process, with real Postgres and
(where a booking must exist) the session's local Stripe server. Each refused
request runs inside `changes_nothing()`, which compares every row a request
could touch before and after.
"""

import json
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
import stripe
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db.models import F
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bookings.models import Booking
from payments import gateway
from payments.models import StripeEvent
from tests.factories import FanFactory, join_and_admit, make_event
from ticketing.models import Event, InventoryBucket
from waitlist import services as waitlist
from waitlist.models import AccessToken, QueueEntry, WaitingRoom
from waitlist.tokens import SALT, sign_token

pytestmark = pytest.mark.django_db
# For tests that go through the services' durable transactions (admission,
# reservation, webhooks), call the local Stripe server, or read from another
# thread (the ASGI stream): nothing wraps them, so every commit is real.
transactional = pytest.mark.django_db(transaction=True)

User = get_user_model()

ACCOUNTS = "/api/v1/accounts/"
TOKEN = "/api/v1/accounts/token/"
BOOKINGS = "/api/v1/bookings/"
WEBHOOK = "/payments/stripe/webhook/"
PASSWORD = "correct horse battery"  # FanFactory's password


def queue_url(event_id) -> str:
    return f"/api/v1/events/{event_id}/queue/"


# --- helpers -----------------------------------------------------------------


def db_state() -> dict:
    """Everything a request could change, row by row."""
    return {
        "users": list(
            User.objects.order_by("pk").values_list("pk", "username", "email", "password", "is_active", "last_login")
        ),
        "api_tokens": list(Token.objects.order_by("key").values_list("key", "user_id")),
        "events": list(Event.objects.order_by("pk").values_list("pk", "capacity", "sale_closed")),
        "buckets": list(
            InventoryBucket.objects.order_by("pk").values_list("pk", "capacity", "available", "held", "sold")
        ),
        "rooms": list(WaitingRoom.objects.order_by("pk").values_list("pk", "serving_number", "opened_at")),
        "queue": list(
            QueueEntry.objects.order_by("pk").values_list("pk", "event_id", "fan_id", "state", "number", "admitted_at")
        ),
        "access_tokens": list(
            AccessToken.objects.order_by("pk").values_list("pk", "entry_id", "fan_id", "used_at", "expires_at")
        ),
        "bookings": list(
            Booking.objects.order_by("pk").values_list(
                "pk",
                "status",
                "quantity",
                "holds_tickets",
                "bucket_id",
                "access_token_id",
                "payment_intent_id",
                "finished_at",
                "late_payment",
                "needs_refund",
                "refund_id",
            )
        ),
        "stripe_events": list(StripeEvent.objects.order_by("pk").values_list("pk", "outcome")),
    }


@contextmanager
def changes_nothing():
    before = db_state()
    yield
    after = db_state()
    changed = {table: (before[table], after[table]) for table in before if before[table] != after[table]}
    assert not changed, f"the refused request changed the database: {changed}"


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The documented status with API.md's error body (and so never a 500)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), (response["Content-Type"], response.content[:200])
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    if code is not None:
        assert body["error"] == code, body
    return body


def client(user=None) -> APIClient:
    c = APIClient()
    # See a server error as a 500 response, the way a client would.
    c.raise_request_exception = False
    if user is not None:
        key = Token.objects.get_or_create(user=user)[0].key
        c.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return c


def post_raw(c: APIClient, url: str, body, content_type: str = "application/json"):
    return c.generic("POST", url, body, content_type=content_type)


def admitted_token(event, fan) -> str:
    return join_and_admit(event=event, fan=fan)


def token_row(signed: str) -> AccessToken:
    return AccessToken.objects.get(pk=uuid.UUID(hex=signing.loads(signed, salt=SALT)["t"]))


def book(c: APIClient, event, token: str, quantity: int = 2) -> dict:
    response = c.post(BOOKINGS, {"event": event.pk, "quantity": quantity, "access_token": token}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def inventory(event) -> tuple[int, int, int]:
    rows = InventoryBucket.objects.filter(event=event).values_list("available", "held", "sold")
    return tuple(sum(col) for col in zip(*rows, strict=True))


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Hundreds of accounts and logins: the production hasher's cost is not under test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def other_fan(db):
    return FanFactory()


@pytest.fixture
def api(fan):
    return client(fan)


@pytest.fixture
def anon():
    return client()


# Bodies that are not a JSON object: 400 wherever a JSON object is expected.
NOT_A_JSON_OBJECT = [
    pytest.param('{"email": "a@example.com", "password": ', id="truncated-json"),
    pytest.param("not json at all", id="not-json"),
    pytest.param("{'email': 'single quotes'}", id="python-literal"),
    pytest.param('{"email": NaN}', id="nan-constant"),
    pytest.param("[]", id="empty-list"),
    pytest.param('["a@example.com", "correct horse battery"]', id="list"),
    pytest.param('"a@example.com"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("true", id="boolean"),
    pytest.param("null", id="null"),
    pytest.param(
        '{"email": "a@example.com", "email": "b@example.com", "password": "correct horse battery"}',
        id="duplicate-key",
    ),
    pytest.param('{"email": "a@example.com", "x": {"k": 1, "k": 2}}', id="duplicate-key-nested"),
]


# --- accounts ----------------------------------------------------------------


@pytest.mark.parametrize("url", [ACCOUNTS, TOKEN])
@pytest.mark.parametrize("body", NOT_A_JSON_OBJECT)
def test_accounts_reject_a_body_that_is_not_a_json_object(fan, anon, url, body):
    with changes_nothing():
        response = post_raw(anon, url, body)
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize("url", [ACCOUNTS, TOKEN])
def test_accounts_reject_an_empty_body(fan, anon, url):
    with changes_nothing():
        response = post_raw(anon, url, "")
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize("url", [ACCOUNTS, TOKEN])
def test_accounts_reject_a_form_encoded_body(fan, anon, url):
    with changes_nothing():
        response = post_raw(
            anon, url, "email=new%40example.com&password=x", content_type="application/x-www-form-urlencoded"
        )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("url", [ACCOUNTS, TOKEN])
@pytest.mark.parametrize("charset", ["rot13", "zlib", "bz2", "base64", "hex", "utf-7", "unicode_escape", "utf-16"])
def test_a_json_body_in_any_charset_but_utf8_is_415(fan, anon, url, charset):
    body = '{"email": "new@example.com", "password": "a long enough passphrase"}'
    with changes_nothing():
        response = post_raw(anon, url, body, content_type=f"application/json; charset={charset}")
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "utf_8", "us-ascii", "no-such-charset"])
def test_a_json_body_labelled_utf8_in_any_spelling_is_read(anon, charset):
    """(Django drops a charset it does not know: such a body is read as UTF-8.)"""
    body = '{"email": "new.fan@example.com", "password": "a long enough passphrase \u00e9"}'
    response = post_raw(anon, ACCOUNTS, body, content_type=f"application/json; charset={charset}")
    assert response.status_code == 201, response.content


GOOD_EMAIL = "new.fan@example.com"
GOOD_PASSWORD = "a long enough passphrase"

BAD_FIELDS = [
    pytest.param({}, id="empty-object"),
    pytest.param({"password": GOOD_PASSWORD}, id="email-missing"),
    pytest.param({"email": GOOD_EMAIL}, id="password-missing"),
    pytest.param({"email": "", "password": GOOD_PASSWORD}, id="email-empty"),
    pytest.param({"email": "   ", "password": GOOD_PASSWORD}, id="email-blank"),
    pytest.param({"email": None, "password": GOOD_PASSWORD}, id="email-null"),
    pytest.param({"email": 12345, "password": GOOD_PASSWORD}, id="email-number"),
    pytest.param({"email": True, "password": GOOD_PASSWORD}, id="email-boolean"),
    pytest.param({"email": [GOOD_EMAIL], "password": GOOD_PASSWORD}, id="email-list"),
    pytest.param({"email": {"address": GOOD_EMAIL}, "password": GOOD_PASSWORD}, id="email-object"),
    pytest.param({"email": "x" * 250 + "@example.com", "password": GOOD_PASSWORD}, id="email-too-long"),
    pytest.param({"email": "fan\x00@example.com", "password": GOOD_PASSWORD}, id="email-nul-char"),
    pytest.param({"email": GOOD_EMAIL, "password": ""}, id="password-empty"),
    pytest.param({"email": GOOD_EMAIL, "password": "        "}, id="password-blank"),
    pytest.param({"email": GOOD_EMAIL, "password": None}, id="password-null"),
    pytest.param({"email": GOOD_EMAIL, "password": 123456789}, id="password-number"),
    pytest.param({"email": GOOD_EMAIL, "password": [GOOD_PASSWORD]}, id="password-list"),
    pytest.param({"email": GOOD_EMAIL, "password": "p" * 1000}, id="password-too-long"),
    pytest.param({"email": GOOD_EMAIL, "password": "a long\x00passphrase"}, id="password-nul-char"),
]


@pytest.mark.parametrize("url", [ACCOUNTS, TOKEN])
@pytest.mark.parametrize("body", BAD_FIELDS)
def test_accounts_reject_missing_empty_or_wrongly_typed_fields(fan, anon, url, body):
    with changes_nothing():
        response = anon.post(url, body, format="json")
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "fan@",
        "@example.com",
        "fan@example",
        "two words@example.com",
        "fan@@example.com",
        "fan@example..com",
        # A well-formed address longer than the login column (150): refused,
        # not a database error.
        "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + ".com",
    ],
)
def test_create_account_rejects_an_invalid_email(fan, anon, email):
    with changes_nothing():
        response = anon.post(ACCOUNTS, {"email": email, "password": GOOD_PASSWORD}, format="json")
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize("password", ["short", "1234567", "password", "12345678", "qwertyuiop", "Password1"])
def test_create_account_rejects_a_weak_password(fan, anon, password):
    with changes_nothing():
        response = anon.post(ACCOUNTS, {"email": GOOD_EMAIL, "password": password}, format="json")
    body = assert_error(response, 400, "invalid")
    assert "password" in body["detail"].lower()


@pytest.mark.parametrize("variant", [str, str.upper, str.title, lambda e: f"  {e.upper()}  "])
def test_create_account_refuses_an_email_in_use_in_any_case(fan, anon, variant):
    with changes_nothing():
        response = anon.post(ACCOUNTS, {"email": variant(fan.email), "password": GOOD_PASSWORD}, format="json")
    assert_error(response, 409, "email_taken")


def test_create_account_refuses_the_same_email_twice(anon):
    first = anon.post(ACCOUNTS, {"email": GOOD_EMAIL, "password": GOOD_PASSWORD}, format="json")
    assert first.status_code == 201, first.content
    with changes_nothing():
        again = anon.post(ACCOUNTS, {"email": GOOD_EMAIL.upper(), "password": GOOD_PASSWORD}, format="json")
    assert_error(again, 409, "email_taken")
    assert User.objects.filter(email=GOOD_EMAIL).count() == 1


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(lambda fan: {"email": fan.email, "password": PASSWORD + "!"}, id="wrong-password"),
        pytest.param(lambda fan: {"email": fan.email, "password": PASSWORD.upper()}, id="password-wrong-case"),
        pytest.param(lambda fan: {"email": "nobody@example.com", "password": PASSWORD}, id="unknown-email"),
        pytest.param(lambda fan: {"email": "not-an-email", "password": PASSWORD}, id="not-an-email"),
    ],
)
def test_token_refuses_bad_credentials(fan, anon, credentials):
    with changes_nothing():
        response = anon.post(TOKEN, credentials(fan), format="json")
    assert_error(response, 401, "bad_credentials")


def test_token_refuses_an_inactive_fan(fan, anon):
    User.objects.filter(pk=fan.pk).update(is_active=False)
    with changes_nothing():
        response = anon.post(TOKEN, {"email": fan.email, "password": PASSWORD}, format="json")
    assert_error(response, 401, "bad_credentials")


# --- events ------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["999999", "0", "99999999999999999999999"])
def test_event_detail_of_an_unknown_id_is_404(event, anon, event_id):
    with changes_nothing():
        response = anon.get(f"/api/v1/events/{event_id}/")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("page", ["0", "999", "abc", "-1"])
def test_event_list_with_a_bad_page_is_404(event, anon, page):
    with changes_nothing():
        response = anon.get("/api/v1/events/", {"page": page})
    assert_error(response, 404, "not_found")


NON_NUMERIC_IDS = ["abc", "-1", "1.5", "1e3", "%20"]


@pytest.mark.parametrize(
    "path",
    [
        *(f"/api/v1/events/{bad}/" for bad in NON_NUMERIC_IDS),
        "/api/v1/events/abc/queue/",
        "/api/v1/bookings/abc/",
        "/api/v1/bookings/abc/cancel/",
    ],
)
def test_a_non_numeric_id_is_a_json_404(event, api, path):
    with changes_nothing():
        response = api.get(path)
    assert_error(response, 404)


@pytest.mark.parametrize("path", [f"/api/v1/events/{bad}/" for bad in NON_NUMERIC_IDS])
def test_a_non_numeric_event_id_is_404(event, anon, path):
    with changes_nothing():
        response = anon.get(path)
    assert response.status_code == 404


# --- waiting room --------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "get", "delete"])
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Token not-a-real-key", id="unknown-key"),
        pytest.param("Token", id="scheme-only"),
        pytest.param("Bearer abc", id="other-scheme"),
    ],
)
def test_queue_needs_authentication(event, fan, method, authorization):
    c = client()
    if authorization:
        c.credentials(HTTP_AUTHORIZATION=authorization)
    with changes_nothing():
        response = getattr(c, method)(queue_url(event.pk))
    assert response.status_code == 401
    assert response.has_header("WWW-Authenticate")
    assert_error(response, 401, "not_authenticated")


def test_queue_of_a_deactivated_fan_is_401(event, fan, api):
    User.objects.filter(pk=fan.pk).update(is_active=False)
    with changes_nothing():
        response = api.post(queue_url(event.pk))
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize("method", ["post", "get", "delete"])
@pytest.mark.parametrize("event_id", ["999999", "99999999999999999999999"])
def test_queue_of_an_unknown_event_is_404(event, api, method, event_id):
    with changes_nothing():
        response = getattr(api, method)(queue_url(event_id))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("method", ["get", "delete"])
def test_queue_status_and_leave_when_not_in_line_are_404(event, api, method):
    with changes_nothing():
        response = getattr(api, method)(queue_url(event.pk))
    assert_error(response, 404, "not_in_queue")


@pytest.mark.parametrize("method", ["get", "delete"])
def test_queue_status_and_leave_after_leaving_are_404(event, api, method):
    assert api.post(queue_url(event.pk)).status_code == 201
    assert api.delete(queue_url(event.pk)).status_code == 204
    with changes_nothing():
        response = getattr(api, method)(queue_url(event.pk))
    assert_error(response, 404, "not_in_queue")


def test_queue_is_per_fan(event, fan, other_fan, api):
    """Another fan's place is not yours to read or give up."""
    assert client(other_fan).post(queue_url(event.pk)).status_code == 201
    with changes_nothing():
        assert_error(api.get(queue_url(event.pk)), 404, "not_in_queue")
        assert_error(api.delete(queue_url(event.pk)), 404, "not_in_queue")


def test_join_a_sold_out_event_is_409(event, api):
    InventoryBucket.objects.filter(event=event).update(sold=F("capacity"), available=0)
    with changes_nothing():
        response = api.post(queue_url(event.pk))
    assert_error(response, 409, "sold_out")
    assert not QueueEntry.objects.exists()


@pytest.mark.parametrize(
    "close",
    [
        pytest.param({"sale_closed": True}, id="sale-closed"),
        pytest.param({"starts_at": timezone.now() - timedelta(minutes=1)}, id="event-started"),
    ],
)
def test_join_a_closed_sale_is_409(event, api, close):
    Event.objects.filter(pk=event.pk).update(**close)
    with changes_nothing():
        response = api.post(queue_url(event.pk))
    assert_error(response, 409, "closed")
    assert not QueueEntry.objects.exists()


def test_join_twice_is_idempotent(event, fan, api):
    first = api.post(queue_url(event.pk))
    assert first.status_code == 201, first.content
    with changes_nothing():
        second = api.post(queue_url(event.pk))
    assert second.status_code == 200, second.content
    assert second.json() == first.json()
    assert first.json()["event"] == event.pk
    assert QueueEntry.objects.filter(event=event, fan=fan).count() == 1


def stream(path: str, authorization: str | None = None) -> dict:
    """One GET through the ASGI router (channels.testing needs daphne, which is not installed)."""
    from config.asgi import application

    headers = [(b"authorization", authorization.encode())] if authorization else []
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": headers,
    }

    async def get_response() -> dict:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await communicator.receive_output(5)
        body = await communicator.receive_output(5)
        await communicator.wait(5)
        return {"status": start["status"], "headers": start["headers"], "body": body["body"]}

    return async_to_sync(get_response)()


def assert_stream_error(response: dict, status: int, code: str) -> None:
    assert response["status"] == status, response
    assert dict(response["headers"]).get(b"content-type", b"").startswith(b"application/json"), response
    body = json.loads(response["body"])
    assert set(body) == {"error", "detail"} and body["error"] == code and body["detail"], body


@transactional
@pytest.mark.parametrize("authorization", [None, "Token not-a-real-key"])
def test_queue_stream_needs_authentication(event, fan, authorization):
    waitlist.join_queue(event=event, fan=fan)
    # A test stack running in this session ticks the admitter over this
    # database: paused, it cannot open the sale or admit the fan mid-request.
    WaitingRoom.objects.filter(event=event).update(paused=True)
    with changes_nothing():
        response = stream(f"{queue_url(event.pk)}stream/", authorization)
    assert_stream_error(response, 401, "not_authenticated")


@transactional
@pytest.mark.parametrize("event_id", [pytest.param("999999", id="unknown-event"), pytest.param(None, id="not-in-line")])
def test_queue_stream_of_an_unknown_event_or_when_not_in_line_is_404(event, fan, event_id):
    key = Token.objects.get_or_create(user=fan)[0].key
    with changes_nothing():
        response = stream(f"{queue_url(event_id or event.pk)}stream/", f"Token {key}")
    assert_stream_error(response, 404, "not_in_queue")


# --- bookings: creating -----------------------------------------------------------


@pytest.fixture
def admitted(event, fan):
    """The fan, admitted with a live access token for `event`."""
    return admitted_token(event, fan)


@transactional
@pytest.mark.parametrize("body", NOT_A_JSON_OBJECT)
def test_booking_rejects_a_body_that_is_not_a_json_object(event, api, admitted, body):
    with changes_nothing():
        response = post_raw(api, BOOKINGS, body)
    assert_error(response, 400, "invalid")


@transactional
def test_booking_rejects_a_form_encoded_body(event, api, admitted):
    body = f"event={event.pk}&quantity=2&access_token={admitted}"
    with changes_nothing():
        response = post_raw(api, BOOKINGS, body, content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


@transactional
@pytest.mark.parametrize(
    "event_value",
    [
        pytest.param(None, id="null"),
        pytest.param("<missing>", id="missing"),
        pytest.param("<id as string>", id="id-as-string"),
        pytest.param("<id as float>", id="id-as-float"),
        pytest.param(True, id="boolean"),
        pytest.param("", id="empty-string"),
        pytest.param("one", id="word"),
        pytest.param("<id in list>", id="list"),
        pytest.param("<id in object>", id="object"),
    ],
)
def test_booking_rejects_a_missing_or_wrongly_typed_event(event, api, admitted, event_value):
    body = {"quantity": 2, "access_token": admitted}
    shapes = {
        "<id as string>": str(event.pk),
        "<id as float>": float(event.pk),
        "<id in list>": [event.pk],
        "<id in object>": {"id": event.pk},
    }
    if event_value != "<missing>":
        body["event"] = shapes.get(event_value, event_value)
    with changes_nothing():
        response = api.post(BOOKINGS, body, format="json")
    assert_error(response, 400, "invalid")


@transactional
@pytest.mark.parametrize("event_id", [999999, 0, -1, 2**63, 10**30])
def test_booking_for_an_unknown_event_is_404(event, api, admitted, event_id):
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event_id, "quantity": 2, "access_token": admitted}, format="json")
    assert_error(response, 404, "not_found")


@transactional
@pytest.mark.parametrize(
    "quantity",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param("2", id="string"),
        pytest.param(2.5, id="fraction"),
        pytest.param(2.0, id="float"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="null"),
        pytest.param("<missing>", id="missing"),
        pytest.param([2], id="list"),
        pytest.param({"n": 2}, id="object"),
        pytest.param(5, id="max-per-order-plus-one"),
        pytest.param(10**30, id="huge"),
    ],
)
def test_booking_rejects_a_bad_quantity(event, api, admitted, quantity):
    assert event.max_per_order == 4
    body = {"event": event.pk, "access_token": admitted}
    if quantity != "<missing>":
        body["quantity"] = quantity
    with changes_nothing():
        response = api.post(BOOKINGS, body, format="json")
    assert_error(response, 400, "invalid_quantity")


@transactional
def test_booking_rejects_an_infinite_quantity(event, api, admitted):
    with changes_nothing():
        response = post_raw(api, BOOKINGS, f'{{"event": {event.pk}, "quantity": 1e400, "access_token": "{admitted}"}}')
    assert_error(response, 400, "invalid_quantity")


def forged(token: str) -> str:
    """The same claims, signed with another SECRET_KEY."""
    return signing.dumps(signing.loads(token, salt=SALT), key="some-other-secret-key", salt=SALT, compress=False)


def tampered(token: str) -> str:
    """One character of the signature changed."""
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


def tampered_claims(token: str) -> str:
    """A claim changed (the fan's id), keeping the original signature."""
    payload, _, rest = token.partition(":")
    claims = signing.loads(token, salt=SALT)
    claims["f"] += 1
    encoded = signing.b64_encode(json.dumps(claims, separators=(",", ":")).encode()).decode()
    return f"{encoded}:{rest}"


@transactional
@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "   ", id="blank"),
        pytest.param(lambda t: "garbage", id="garbage"),
        pytest.param(lambda t: "a:b:c", id="garbage-with-colons"),
        pytest.param(lambda t: t + "x" * 600, id="too-long"),
        pytest.param(lambda t: t[:-3], id="truncated"),
        pytest.param(forged, id="signed-with-another-key"),
        pytest.param(tampered, id="signature-tampered"),
        pytest.param(tampered_claims, id="claims-tampered"),
        pytest.param(lambda t: signing.dumps(signing.loads(t, salt=SALT), salt="other-salt"), id="other-salt"),
        pytest.param(lambda t: signing.dumps({"t": "zz", "e": 1, "f": 1}, salt=SALT), id="signed-bad-payload"),
        pytest.param(lambda t: signing.dumps([1, 2, 3], salt=SALT), id="signed-list"),
    ],
)
def test_booking_rejects_an_invalid_access_token(event, api, admitted, make_token):
    body = {"event": event.pk, "quantity": 2, "access_token": make_token(admitted)}
    with changes_nothing():
        response = api.post(BOOKINGS, body, format="json")
    assert_error(response, 403, "invalid_token")


@pytest.mark.parametrize(
    "token", [pytest.param("<missing>", id="missing"), None, 12345, ["a-token"], {"token": "a-token"}, True]
)
def test_booking_without_a_token_string_is_400(event, api, admitted, token):
    body = {"event": event.pk, "quantity": 2}
    if token != "<missing>":
        body["access_token"] = token
    with changes_nothing():
        response = api.post(BOOKINGS, body, format="json")
    assert_error(response, 400, "invalid")


@transactional
def test_booking_with_a_signed_token_naming_no_token_row_is_403(event, fan, api, admitted):
    unknown = sign_token(token_id=uuid.uuid4(), event_id=event.pk, fan_id=fan.pk)
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 2, "access_token": unknown}, format="json")
    assert_error(response, 403, "invalid_token")


@transactional
def test_booking_with_an_expired_token_is_403(event, api, admitted):
    past = timezone.now() - timedelta(seconds=settings.ACCESS_TOKEN_LEEWAY_SECONDS + 30)
    AccessToken.objects.filter(pk=token_row(admitted).pk).update(expires_at=past)
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 2, "access_token": admitted}, format="json")
    assert_error(response, 403, "token_expired")


@transactional
def test_booking_with_a_used_token_is_403(event, api, admitted, local_stripe):
    book(api, event, admitted, quantity=2)
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 1, "access_token": admitted}, format="json")
    assert_error(response, 403, "token_used")
    assert inventory(event) == (8, 2, 0)


@transactional
def test_booking_with_another_fans_token_is_403_and_leaves_it_usable(event, fan, api, admitted, other_fan):
    other = client(other_fan)
    with changes_nothing():
        response = other.post(BOOKINGS, {"event": event.pk, "quantity": 2, "access_token": admitted}, format="json")
    assert_error(response, 403, "invalid_token")
    assert token_row(admitted).used_at is None


@transactional
def test_booking_with_a_token_for_another_event_is_403(event, fan, api, admitted):
    other_event = make_event(tickets=10, name="Other show")
    other_token = admitted_token(other_event, fan)
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 2, "access_token": other_token}, format="json")
        also = api.post(BOOKINGS, {"event": other_event.pk, "quantity": 2, "access_token": admitted}, format="json")
    assert_error(response, 403, "invalid_token")
    assert_error(also, 403, "invalid_token")


@transactional
def test_not_enough_tickets_is_409_and_the_token_stays_usable(fan, api, local_stripe):
    event = make_event(tickets=3, max_per_order=4)
    token = admitted_token(event, fan)
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 4, "access_token": token}, format="json")
    assert_error(response, 409, "not_enough_tickets")
    assert token_row(token).used_at is None

    booking = book(api, event, token, quantity=3)
    assert booking["status"] == "processing"
    assert inventory(event) == (0, 3, 0)


@transactional
def test_a_refused_token_can_still_book(event, api, admitted, local_stripe):
    """A run of refusals (quantity, shape, event) leaves the token as it was."""
    attempts = [
        {"event": event.pk, "quantity": 0, "access_token": admitted},
        {"event": event.pk, "quantity": "2", "access_token": admitted},
        {"event": str(event.pk), "quantity": 2, "access_token": admitted},
        {"event": event.pk, "quantity": 2, "access_token": tampered(admitted)},
    ]
    with changes_nothing():
        for body in attempts:
            assert 400 <= api.post(BOOKINGS, body, format="json").status_code < 500
    book(api, event, admitted, quantity=2)
    assert inventory(event) == (8, 2, 0)


@transactional
def test_booking_with_the_token_of_a_place_given_up_is_403(event, api, admitted, local_stripe):
    assert api.delete(queue_url(event.pk)).status_code == 204
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 2, "access_token": admitted}, format="json")
    assert_error(response, 403, "invalid_token")


@transactional
@pytest.mark.parametrize("order", ["9 then 1", "1 then 9"])
def test_a_booking_with_a_key_given_twice_is_400_whichever_comes_first(event, api, admitted, order):
    first, last = order.split(" then ")
    body = f'{{"event": {event.pk}, "quantity": {first}, "quantity": {last}, "access_token": "{admitted}"}}'
    with changes_nothing():
        response = post_raw(api, BOOKINGS, body)
    assert_error(response, 400, "invalid")
    assert "quantity" in response.json()["detail"]


@transactional
def test_leaving_while_the_turns_booking_lives_is_404_and_gives_no_second_turn(event, api, admitted, local_stripe):
    """Leave-and-rejoin must not turn one admission into several live orders."""
    booked = api.post(BOOKINGS, {"event": event.pk, "quantity": 4, "access_token": admitted}, format="json")
    assert booked.status_code == 201
    with changes_nothing():
        response = api.delete(queue_url(event.pk))
    assert_error(response, 404, "not_in_queue")
    assert "still held or paid" in response.json()["detail"]
    rejoined = api.post(queue_url(event.pk))
    assert (rejoined.status_code, rejoined.json()["status"]) == (200, "booked")
    assert QueueEntry.objects.get(event=event).state == QueueEntry.State.BOOKED

    # Once the booking gives its tickets back, the fan may leave (and later join again).
    assert api.post(f"{BOOKINGS}{booked.json()['id']}/cancel/").status_code == 200
    assert api.delete(queue_url(event.pk)).status_code == 204
    assert api.post(queue_url(event.pk)).status_code == 201


@transactional
def test_booking_after_the_sale_closed_is_refused(event, api, admitted, local_stripe):
    Event.objects.filter(pk=event.pk).update(sale_closed=True)
    with changes_nothing():
        response = api.post(BOOKINGS, {"event": event.pk, "quantity": 2, "access_token": admitted}, format="json")
    assert_error(response, 409, "sale_closed")


# --- bookings: reading and cancelling ------------------------------------------------


@transactional
@pytest.mark.parametrize(
    "method,path",
    [
        ("get", BOOKINGS),
        ("post", BOOKINGS),
        ("get", "/api/v1/bookings/{id}/"),
        ("post", "/api/v1/bookings/{id}/cancel/"),
    ],
)
def test_bookings_need_authentication(event, api, admitted, local_stripe, method, path):
    booking = book(api, event, admitted)
    anon = client()
    url = path.format(id=booking["id"])
    with changes_nothing():
        if method == "get":
            response = anon.get(url)
        else:
            response = anon.post(url, {"event": event.pk, "quantity": 1, "access_token": admitted}, format="json")
    assert_error(response, 401, "not_authenticated")


@pytest.fixture
def someone_elses_booking(event, other_fan, local_stripe) -> dict:
    return book(client(other_fan), event, admitted_token(event, other_fan))


@transactional
def test_another_fans_booking_is_404(api, someone_elses_booking, local_stripe):
    booking_id = someone_elses_booking["id"]
    intent = someone_elses_booking["payment"]["payment_intent"]
    with changes_nothing():
        assert_error(api.get(f"/api/v1/bookings/{booking_id}/"), 404, "not_found")
        assert_error(api.post(f"/api/v1/bookings/{booking_id}/cancel/"), 404, "not_found")
    assert api.get(BOOKINGS).json() == []
    assert local_stripe.get(f"/v1/payment_intents/{intent}")["status"] != "canceled"


@transactional
@pytest.mark.parametrize("booking_id", ["999999", "0", "99999999999999999999999"])
def test_an_unknown_booking_is_404(api, someone_elses_booking, booking_id):
    with changes_nothing():
        assert_error(api.get(f"/api/v1/bookings/{booking_id}/"), 404, "not_found")
        assert_error(api.post(f"/api/v1/bookings/{booking_id}/cancel/"), 404, "not_found")


@transactional
@pytest.mark.parametrize(
    "end",
    [
        pytest.param(lambda c, b: c.post(f"/api/v1/bookings/{b['id']}/cancel/"), id="cancelled"),
        pytest.param(lambda c, b: Booking.objects.filter(pk=b["id"]).update(status="succeeded"), id="succeeded"),
        pytest.param(
            lambda c, b: Booking.objects.filter(pk=b["id"]).update(status="refunded", refund_id="re_1"), id="refunded"
        ),
    ],
)
def test_cancel_a_booking_that_is_not_processing_is_409(event, api, admitted, local_stripe, end):
    booking = book(api, event, admitted)
    end(api, booking)
    assert Booking.objects.get(pk=booking["id"]).status != "processing"
    with changes_nothing():
        response = api.post(f"/api/v1/bookings/{booking['id']}/cancel/")
    assert_error(response, 409, "not_cancellable")


@transactional
@pytest.mark.parametrize(
    "method,path",
    [
        ("put", ACCOUNTS),
        ("get", TOKEN),
        ("post", "/api/v1/events/"),
        ("delete", "/api/v1/events/{event}/"),
        ("put", "/api/v1/events/{event}/queue/"),
        ("delete", BOOKINGS),
        ("post", "/api/v1/bookings/{booking}/"),
        ("get", "/api/v1/bookings/{booking}/cancel/"),
    ],
)
def test_a_wrong_method_is_405(event, api, admitted, local_stripe, method, path):
    booking = book(api, event, admitted)
    with changes_nothing():
        response = getattr(api, method)(path.format(event=event.pk, booking=booking["id"]))
    assert_error(response, 405, "method_not_allowed")


# --- Stripe webhook ----------------------------------------------------------------


def stripe_event(*, intent_id: str, type_: str = "payment_intent.succeeded", event_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": type_,
            "created": int(time.time()),
            "data": {"object": {"id": intent_id, "object": "payment_intent", "status": "succeeded", "metadata": {}}},
        }
    )


def signature(payload: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        payload, secret or settings.STRIPE_WEBHOOK_SECRET, timestamp=timestamp
    )


def tampered_signature(payload: str) -> str:
    header = signature(payload)
    return header[:-1] + ("1" if header[-1] == "0" else "0")


def deliver(payload, header: str | None):
    c = client()
    extra = {"HTTP_STRIPE_SIGNATURE": header} if header is not None else {}
    return c.generic("POST", WEBHOOK, payload, content_type="application/json", **extra)


@pytest.fixture
def processing_booking(event, api, admitted, local_stripe) -> Booking:
    booking = Booking.objects.get(pk=book(api, event, admitted)["id"])
    assert booking.status == "processing" and booking.payment_intent_id
    return booking


BAD_SIGNATURES = [
    pytest.param(lambda payload: None, id="missing"),
    pytest.param(lambda payload: "", id="empty"),
    pytest.param(lambda payload: "garbage", id="garbage"),
    pytest.param(lambda payload: "t=abc,v1=abc", id="bad-timestamp"),
    pytest.param(lambda payload: f"t={int(time.time())}", id="no-v1"),
    pytest.param(lambda payload: signature(payload).replace("v1=", "v0="), id="other-scheme"),
    pytest.param(lambda payload: signature(payload).split(",")[1], id="no-timestamp"),
    pytest.param(lambda payload: signature(payload, secret="whsec_not_ours"), id="wrong-secret"),
    pytest.param(tampered_signature, id="tampered"),
    pytest.param(lambda payload: signature(payload, timestamp=int(time.time()) - 3600), id="too-old"),
    pytest.param(lambda payload: signature(payload.replace("succeeded", "canceled")), id="other-payload"),
    pytest.param(lambda payload: signature(payload + " "), id="payload-plus-space"),
]


@transactional
@pytest.mark.parametrize("make_header", BAD_SIGNATURES)
def test_webhook_with_a_bad_signature_is_400_and_changes_nothing(processing_booking, make_header):
    payload = stripe_event(intent_id=processing_booking.payment_intent_id)
    with changes_nothing():
        response = deliver(payload, make_header(payload))
    assert_error(response, 400, "bad_signature")
    assert not StripeEvent.objects.exists()
    processing_booking.refresh_from_db()
    assert processing_booking.status == "processing"


@transactional
def test_webhook_with_a_body_that_is_not_utf8_is_400(processing_booking):
    with changes_nothing():
        response = deliver(b"\xff\xfe\x00{", signature("x"))
    assert_error(response, 400)


@transactional
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("{}", id="empty-object"),
        pytest.param('{"id": "evt_1"}', id="no-type"),
        pytest.param('{"type": "payment_intent.succeeded"}', id="no-id"),
        pytest.param('{"id": 1, "type": "payment_intent.succeeded"}', id="id-not-a-string"),
        pytest.param('{"id": "evt_1", "type": ["payment_intent.succeeded"]}', id="type-not-a-string"),
    ],
)
def test_webhook_signed_but_not_a_stripe_event_is_400(processing_booking, payload):
    with changes_nothing():
        response = deliver(payload, signature(payload))
    assert_error(response, 400)


@transactional
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("[]", id="list"),
        pytest.param('"evt"', id="string"),
        pytest.param("42", id="number"),
        pytest.param('{"id": "evt_1", "type": "payment_intent.succeeded", "data": "x"}', id="data-not-object"),
        pytest.param(
            '{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": "x"}}', id="object-not-object"
        ),
        pytest.param(
            '{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": 7}}}', id="intent-id-number"
        ),
        pytest.param(
            json.dumps({"id": "evt_" + "x" * 300, "type": "payment_intent.succeeded", "data": {"object": {}}}),
            id="id-too-long",
        ),
    ],
)
def test_webhook_signed_but_malformed_is_400(processing_booking, payload):
    with changes_nothing():
        response = deliver(payload, signature(payload))
    assert_error(response, 400)


@transactional
def test_webhook_for_an_unknown_intent_is_acknowledged_and_recorded_once(processing_booking):
    payload = stripe_event(intent_id="pi_unknown_to_us", event_id="evt_unknown_intent")
    before = db_state()

    first = deliver(payload, signature(payload))
    second = deliver(payload, signature(payload))

    assert first.status_code == 200, first.content
    assert first.json()["outcome"].startswith("ignored")
    assert second.status_code == 200, second.content
    assert second.json()["outcome"] == "duplicate"
    recorded = StripeEvent.objects.get()
    assert (recorded.id, recorded.payment_intent_id) == ("evt_unknown_intent", "pi_unknown_to_us")
    assert recorded.outcome.startswith("ignored")
    after = db_state()
    assert {k: v for k, v in after.items() if k != "stripe_events"} == {
        k: v for k, v in before.items() if k != "stripe_events"
    }


@transactional
def test_webhook_delivered_twice_applies_once(event, processing_booking):
    # The event is a hint: Stripe must really have the money.
    gateway.pay_with_test_card(
        payment_intent_id=processing_booking.payment_intent_id,
        number="4242424242424242",
        exp_month=12,
        exp_year=2035,
        cvc="123",
    )
    payload = stripe_event(intent_id=processing_booking.payment_intent_id, event_id="evt_paid")

    first = deliver(payload, signature(payload))
    assert first.status_code == 200, first.content
    assert first.json()["outcome"] == "succeeded"
    with changes_nothing():
        second = deliver(payload, signature(payload))
    assert second.status_code == 200, second.content
    assert second.json()["outcome"] == "duplicate"
    assert StripeEvent.objects.count() == 1
    processing_booking.refresh_from_db()
    assert processing_booking.status == "succeeded"
    assert inventory(event) == (8, 0, 2)
