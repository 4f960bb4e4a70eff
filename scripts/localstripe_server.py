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

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="localstripe, in memory, on one interface")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    web.run_app(server.app, sock=sock, print=None)
