"""JSON bodies that cannot be handled are a 400, whatever their shape."""

import codecs
import json

from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant


def _object_with_unique_keys(pairs: list[tuple[str, object]]) -> dict:
    # {"quantity": 9, "quantity": 1} means 1 to Python and 9 to a proxy or
    # firewall that reads the first: refuse it rather than guess.
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears more than once")
        seen[key] = value
    return seen


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, plus: a key given twice in one object is a 400, a
    charset other than UTF-8 a 415, and very deep nesting (RecursionError,
    else a 500) a 400 too."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        # JSON is UTF-8 (RFC 8259). Any other charset Python knows would be
        # honoured otherwise, including codecs that are not text at all
        # (rot13, zlib, base64: a 500, or a body a proxy reads as noise).
        try:
            utf8 = codecs.lookup(encoding).name in ("utf-8", "ascii")  # ASCII is UTF-8 too
        except LookupError:
            utf8 = False
        if not utf8:
            raise UnsupportedMediaType(media_type, detail="JSON bodies must be UTF-8 (charset=utf-8 or none).")
        try:
            return json.load(
                codecs.getreader("utf-8")(stream),
                object_pairs_hook=_object_with_unique_keys,
                parse_constant=strict_constant if self.strict else None,
            )
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
