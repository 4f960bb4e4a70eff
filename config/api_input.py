"""Small checks on parsed JSON bodies: a wrong shape is a 400, never a 500."""

from ticketing.errors import ServiceError


def json_object(data) -> dict:
    if not isinstance(data, dict):
        raise ServiceError("The body must be a JSON object.", code="invalid")
    return data


def required_string(data: dict, field: str, *, max_length: int = 255) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ServiceError(f"'{field}' is required and must be a non-empty string.", code="invalid")
    if len(value) > max_length:
        raise ServiceError(f"'{field}' is too long.", code="invalid")
    if not is_storable_text(value):
        raise ServiceError(f"'{field}' must be valid text (no NUL or unpaired surrogates).", code="invalid")
    return value


def is_storable_text(value: str) -> bool:
    """Postgres text holds neither NUL nor lone UTF-16 surrogates (JSON may carry both)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def required_int(data: dict, field: str, *, code: str = "invalid") -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServiceError(f"'{field}' is required and must be an integer.", code=code)
    return value
