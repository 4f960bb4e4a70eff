import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import FanFactory, make_event


@pytest.fixture
def fan(db):
    return FanFactory()


@pytest.fixture
def event(db):
    return make_event(tickets=10)


@pytest.fixture
def api(fan):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=fan).key}")
    return client
