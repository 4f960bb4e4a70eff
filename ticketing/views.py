"""Fans' pages: the events on sale, one event, and accounts."""

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from ticketing import accounts
from ticketing.errors import ServiceError
from ticketing.selectors import event_status, events_with_inventory
from waitlist.selectors import get_entry

EVENTS_PER_PAGE = 50


def event_list(request):
    page = Paginator(events_with_inventory().order_by("starts_at", "id"), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = [
        (event, event_status(event=event, available=event.total_available, held=event.total_held)) for event in page
    ]
    return render(request, "ticketing/event_list.html", {"page": page, "rows": rows})


def event_detail(request, event_id: int):
    event = get_object_or_404(events_with_inventory(), pk=event_id)
    status = event_status(event=event, available=event.total_available, held=event.total_held)
    # A fan already in line goes back to their place instead of joining again.
    entry = get_entry(event=event, fan=request.user) if request.user.is_authenticated else None
    return render(request, "ticketing/event_detail.html", {"event": event, "status": status, "entry": entry})


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters.",
    )


@require_http_methods(["GET", "POST"])
def signup(request):
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, _ = accounts.create_fan(email=form.cleaned_data["email"], password=form.cleaned_data["password"])
        except ServiceError as exc:
            form.add_error(None, exc.detail)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome! Your account is ready.")
            return redirect(_safe_next(request) or "event-list")
    return render(request, "registration/signup.html", {"form": form, "next": _safe_next(request)})


class EmailAuthenticationForm(AuthenticationForm):
    """Log in by email: usernames are the lower-cased email address."""

    username = forms.CharField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong email or password. Passwords are case-sensitive.",
    }

    def clean_username(self) -> str:
        return accounts.normalize_email(self.cleaned_data["username"])


class LoginView(auth_views.LoginView):
    form_class = EmailAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


def _safe_next(request) -> str:
    # Only same-site redirects after signing up: `next` is user input.
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return ""
