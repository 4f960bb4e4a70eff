"""Every API error as `{"error": code, "detail": sentence}` (API.md)."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from ticketing.errors import ServiceError

log = logging.getLogger(__name__)

_CODES = {
    exceptions.ParseError: (400, "invalid"),
    exceptions.ValidationError: (400, "invalid"),
    exceptions.NotAuthenticated: (401, "not_authenticated"),
    exceptions.AuthenticationFailed: (401, "not_authenticated"),
    exceptions.PermissionDenied: (403, "forbidden"),
    exceptions.NotFound: (404, "not_found"),
    exceptions.MethodNotAllowed: (405, "method_not_allowed"),
    exceptions.NotAcceptable: (406, "not_acceptable"),
    exceptions.UnsupportedMediaType: (415, "unsupported_media_type"),
    exceptions.Throttled: (429, "rate_limited"),
}


def error_response(*, status: int, code: str, detail: str, headers: dict | None = None) -> Response:
    return Response({"error": code, "detail": detail}, status=status, headers=headers)


def json_not_found(request, exception=None):
    """404s under /api/ are JSON like every other API error (Django's default is HTML)."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def json_bad_request(request, exception=None):
    """Django's own 400s (an unreadable or oversized body) are JSON outside the fan pages too."""
    from django.http import JsonResponse
    from django.views.defaults import bad_request

    if request.path.startswith(("/api/", "/payments/stripe/")):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"error": "too_large", "detail": "The request body is too large."}, status=413)
        return JsonResponse({"error": "invalid", "detail": "The request could not be read."}, status=400)
    return bad_request(request, exception)


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return error_response(status=exc.status, code=exc.code, detail=exc.detail)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return error_response(status=413, code="too_large", detail="The request body is too large.")
    elif isinstance(exc, SuspiciousOperation):
        return error_response(status=400, code="invalid", detail="The request could not be read.")
    if isinstance(exc, OperationalError):
        # The database is down or every pooled connection stayed busy: a
        # retry can succeed, so say so (never a 500 the client gives up on).
        log.warning("database unavailable in %s: %s", context.get("view"), exc)
        return error_response(
            status=503,
            code="busy",
            detail="We could not reach our database in time; please try again in a moment.",
            headers={"Retry-After": "2"},
        )
    if not isinstance(exc, exceptions.APIException):
        # A bug: log it, but keep the API's error format (and no debug page).
        log.exception("unhandled error in %s", context.get("view"))
        return error_response(status=500, code="server_error", detail="Something went wrong on our side.")
    status, code = next(((s, c) for cls, (s, c) in _CODES.items() if isinstance(exc, cls)), (exc.status_code, "error"))
    headers = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait) + 1)
    if status == 401:
        headers["WWW-Authenticate"] = 'Token realm="api"'
    detail = exc.detail
    if isinstance(detail, (list, dict)):
        detail = _flatten(detail)
    return error_response(status=status, code=code, detail=str(detail), headers=headers)


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)
