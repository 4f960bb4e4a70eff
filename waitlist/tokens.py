"""The signed form of an access token that fans carry.

The signature only proves we issued the string; whether it is still good
(unexpired, unused, this fan's, this event's) is decided by the AccessToken
row it names.
"""

import uuid
from dataclasses import dataclass
from functools import cache

from django.core import signing

SALT = "waitlist.access-token"


@dataclass(frozen=True)
class TokenClaims:
    token_id: uuid.UUID
    event_id: int
    fan_id: int


class InvalidTokenString(Exception):
    pass


@cache
def _signer() -> signing.TimestampSigner:
    # One per process: every reservation verifies a token, and building a
    # signer reads settings and derives its key each time.
    return signing.TimestampSigner(salt=SALT)


def sign_token(*, token_id: uuid.UUID, event_id: int, fan_id: int) -> str:
    return _signer().sign_object({"t": token_id.hex, "e": event_id, "f": fan_id})


def read_token(value: object) -> TokenClaims:
    if not isinstance(value, str) or not value or len(value) > 512:
        raise InvalidTokenString("not a token")
    try:
        data = _signer().unsign_object(value)
        return TokenClaims(token_id=uuid.UUID(hex=data["t"]), event_id=int(data["e"]), fan_id=int(data["f"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise InvalidTokenString("bad signature or payload") from exc
