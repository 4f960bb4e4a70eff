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
    if "\x00" in value:
        # Postgres text cannot hold NUL: a lookup with one is a DataError (500).
        raise ServiceError(f"'{field}' must not contain NUL characters.", code="invalid")
    return value


def required_int(data: dict, field: str, *, code: str = "invalid") -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServiceError(f"'{field}' is required and must be an integer.", code=code)
    return value
