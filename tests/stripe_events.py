"""Stripe events signed the way Stripe signs them, for webhook tests."""

import hashlib
import hmac
import json
import time
import uuid

from django.conf import settings


def stripe_event(event_type: str, obj: dict, *, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


def intent_event(event_type: str, intent_id: str, *, booking_id: int | None = None, event_id=None) -> bytes:
    obj = {"id": intent_id, "object": "payment_intent", "metadata": {}}
    if booking_id is not None:
        obj["metadata"]["booking_id"] = str(booking_id)
    return stripe_event(event_type, obj, event_id=event_id)


def signature(payload: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    timestamp = timestamp or int(time.time())
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new((secret or settings.STRIPE_WEBHOOK_SECRET).encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
