"""Run localstripe in memory only, on the loopback interface.

localstripe pickles its whole store to one fixed file, /tmp/localstripe.pickle,
on every write, and reloads it at start: writes get slower as the store grows,
and two instances on one machine (a `make run` and the tests, say) corrupt
each other's state. This runs it with that persistence switched off. It
also listens on 127.0.0.1 only (localstripe itself binds every interface):
anyone who can reach a fake Stripe can "pay" with a test card.

    python scripts/localstripe_server.py --port 8420 [--host 127.0.0.1]
"""

import argparse
import socket

from aiohttp import web
from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None


# localstripe lists objects of a kind by scanning its whole store, and it
# lists a charge's refunds every time it shows the charge (a payment, a
# webhook, a retrieve): each call costs time in proportion to everything
# created so far, so at an on-sale of thousands it answered in seconds and
# spent half its CPU there (py-spy). Stripe itself does not slow down like
# that. The store here keeps an index per kind, in the same insertion order,
# and lists from it; what a listing returns is unchanged.
def _kind(key: str) -> str:
    return key.split(":", 1)[0]


# localstripe has one store; the index starts from what it holds now.
_by_kind: dict[str, dict] = {}
for _key, _value in dict.items(resources.store):
    _by_kind.setdefault(_kind(_key), {})[_key] = _value


def _set(self, key, value):
    dict.__setitem__(self, key, value)
    _by_kind.setdefault(_kind(key), {})[key] = value


def _delete(self, key):
    dict.__delitem__(self, key)
    _by_kind.get(_kind(key), {}).pop(key, None)


def _clear(self):
    dict.clear(self)
    _by_kind.clear()


def _list_all(cls, url, limit=None, starting_after=None, **kwargs):
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    listing = resources.List(url, limit=limit, starting_after=starting_after)
    listing._list = list(_by_kind.get(cls.object, {}).values())
    return listing


resources.Store.__setitem__ = _set
resources.Store.__delitem__ = _delete
resources.Store.clear = _clear
resources.StripeObject._api_list_all = classmethod(_list_all)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="localstripe, in memory, on one interface")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    web.run_app(server.app, sock=sock, print=None)
