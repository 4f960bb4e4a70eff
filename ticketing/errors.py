"""The error every service raises for a refusal a fan or client should see.

The API turns it into `{"error": code, "detail": detail}` with `status`; the
site's pages show `detail`. Nothing has changed when one is raised.
"""


class ServiceError(Exception):
    status = 400
    code = "invalid"
    detail = "The request could not be processed."

    def __init__(self, detail: str | None = None, *, code: str | None = None, status: int | None = None):
        self.detail = detail or self.detail
        self.code = code or self.code
        self.status = status or self.status
        super().__init__(self.detail)


class NotFound(ServiceError):
    status = 404
    code = "not_found"
    detail = "Not found."


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"
