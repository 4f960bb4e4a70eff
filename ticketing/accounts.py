"""Fan accounts: the email is the login; API clients get a DRF token."""

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from ticketing.errors import Conflict, ServiceError

User = get_user_model()


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_new_fan(*, email: str, password: str) -> str:
    email = normalize_email(email)
    if len(email) > User._meta.get_field("username").max_length:
        raise ServiceError("That email address is too long.", code="invalid")
    try:
        validate_email(email)
    except ValidationError:
        raise ServiceError("Enter a valid email address.", code="invalid") from None
    try:
        validate_password(password, User(username=email, email=email))
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), code="invalid") from None
    return email


def create_fan(*, email: str, password: str) -> tuple[User, str]:
    """Create a fan with an API token; 409 email_taken if the email is in use (unique username)."""
    email = check_new_fan(email=email, password=password)
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=email, email=email, password=password)
            token = Token.objects.create(user=user)
    except IntegrityError:
        raise Conflict("An account with this email already exists.", code="email_taken") from None
    return user, token.key


def token_for_credentials(*, email: str, password: str, request=None) -> str:
    user = authenticate(request, username=normalize_email(email), password=password)
    if user is None or not user.is_active:
        raise ServiceError("Wrong email or password.", code="bad_credentials", status=401)
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
