"""The local Stripe server's store index lists what localstripe's scan would."""

import asyncio
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "localstripe_server.py"


# localstripe registers plain-function routes, which aiohttp warns about on import.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_listings_come_from_the_index_in_insertion_order_and_follow_deletes_and_flushes():
    spec = importlib.util.spec_from_file_location("localstripe_server", SCRIPT)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # patches localstripe's store
    from localstripe import resources

    store = resources.store
    store.clear()

    async def create() -> tuple[list, object]:
        # localstripe schedules a webhook task for some objects it creates:
        # inside a loop, which asyncio.run closes (with those tasks) after.
        intents = [resources.PaymentIntent(amount=100 * i, currency="usd") for i in range(1, 4)]
        return intents, resources.Customer(email="fan@example.com")

    intents, customer = asyncio.run(create())

    def scanned(kind: str) -> list:
        return [value for key, value in dict.items(store) if key.startswith(kind + ":")]

    listed = resources.PaymentIntent._api_list_all(None)._list
    assert listed == scanned("payment_intent") == intents
    assert resources.Customer._api_list_all(None)._list == [customer]

    resources.PaymentIntent._api_delete(intents[1].id)
    assert resources.PaymentIntent._api_list_all(None)._list == scanned("payment_intent") == [intents[0], intents[2]]
    store.clear()
    assert resources.PaymentIntent._api_list_all(None)._list == [] and not dict(store)
