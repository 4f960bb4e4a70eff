from django.contrib import admin
from django.urls import include, path, re_path

from bookings import api as bookings_api
from config.api_errors import json_bad_request, json_not_found
from config.health import healthz
from payments.views import stripe_webhook
from ticketing import api as ticketing_api
from waitlist import api as waitlist_api

api_v1 = [
    path("accounts/", ticketing_api.create_account, name="api-accounts"),
    path("accounts/token/", ticketing_api.obtain_token, name="api-token"),
    path("events/", ticketing_api.event_list, name="api-events"),
    path("events/<int:event_id>/", ticketing_api.event_detail, name="api-event"),
    path("events/<int:event_id>/queue/", waitlist_api.queue, name="api-queue"),
    path("bookings/", bookings_api.bookings, name="api-bookings"),
    path("bookings/<int:booking_id>/", bookings_api.booking_detail, name="api-booking"),
    path("bookings/<int:booking_id>/cancel/", bookings_api.booking_cancel, name="api-booking-cancel"),
    # Anything else under /api/v1/ (e.g. a non-numeric id) is a JSON 404, in DEBUG too.
    re_path(r"^", json_not_found),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # Served by a Channels consumer (config.asgi); Django only sees this path
    # when the site runs without the ASGI router.
    path("api/v1/events/<int:event_id>/queue/stream/", waitlist_api.stream_needs_asgi, name="queue-stream"),
    path("payments/stripe/webhook/", stripe_webhook, name="stripe-webhook"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("config.site_urls")),
]

handler404 = json_not_found
handler400 = json_bad_request
