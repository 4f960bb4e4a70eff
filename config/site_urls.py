"""Fans' server-rendered pages. Other code reverses these names: keep them."""

from django.contrib.auth import views as auth_views
from django.urls import path

from bookings import views as bookings_views
from payments import pay_page
from ticketing import views as ticketing_views
from waitlist import views as waitlist_views

urlpatterns = [
    path("", ticketing_views.event_list, name="event-list"),
    path("events/<int:event_id>/", ticketing_views.event_detail, name="event-detail"),
    path("events/<int:event_id>/join/", waitlist_views.join, name="queue-join"),
    path("events/<int:event_id>/queue/", waitlist_views.waiting_room, name="waiting-room"),
    path("events/<int:event_id>/leave/", waitlist_views.leave, name="queue-leave"),
    path("events/<int:event_id>/book/", bookings_views.create, name="booking-create"),
    path("bookings/", bookings_views.booking_list, name="booking-list"),
    path("bookings/<int:booking_id>/", bookings_views.booking_detail, name="booking-detail"),
    path("bookings/<int:booking_id>/cancel/", bookings_views.cancel, name="booking-cancel"),
    path("bookings/<int:booking_id>/pay/", pay_page.pay, name="booking-pay"),
    path("signup/", ticketing_views.signup, name="signup"),
    path("login/", ticketing_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
