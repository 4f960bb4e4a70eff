"""Run localstripe in memory only.

localstripe pickles its whole store to one fixed file, /tmp/localstripe.pickle,
on every write, and reloads it at start: writes get slower as the store grows,
and two instances on one machine (a `make run` and the tests, say) corrupt
each other's state. This runs it with that persistence switched off.

    python scripts/localstripe_server.py --port 8420
"""

import sys

from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

if __name__ == "__main__":
    sys.argv[0] = "localstripe"
    sys.exit(server.start())
