"""The live stream's reads of Postgres, made on the event loop.

When a sale opens, thousands of fans open their stream within seconds, and
every one needs who they are and where they stand. Through Django's ORM each
read would be a hop to a worker thread, and those threads contend with the
event loop for the GIL: measured, the hops cost more than the queries. Here
each ASGI process keeps a few connections of its own and runs the same
single-query reads as waitlist.selectors, with no thread at all.
"""

import asyncio
import weakref

import psycopg
from django.contrib.auth import get_user_model
from django.db import connection

from waitlist import selectors

POOL_SIZE = 4


def _conninfo() -> dict:
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}
    if db["PASSWORD"]:
        params["password"] = db["PASSWORD"]
    # Times come back in UTC, as from Django's own connections, and no JIT
    # (see config.settings).
    params["options"] = "-c TimeZone=UTC -c jit=off"
    return {key: value for key, value in params.items() if value not in ("", None)}


class _LoopConnections:
    """At most POOL_SIZE autocommit connections for one event loop.

    Deliberately no background tasks (psycopg_pool's workers): a loop that
    closes, as each async_to_sync call's does, leaves nothing to cancel.
    """

    def __init__(self):
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(POOL_SIZE)

    async def fetch_one(self, sql: str, params: list) -> tuple | None:
        async with self._slots:
            for attempt in range(2):
                conn = self._idle.pop() if self._idle else None
                fresh = conn is None
                if fresh:
                    conn = await psycopg.AsyncConnection.connect(**_conninfo(), autocommit=True)
                try:
                    cursor = await conn.execute(sql, params)
                    row = await cursor.fetchone()
                except psycopg.OperationalError:
                    await conn.close()
                    if fresh or attempt:  # an idle connection the server dropped: retry once on a new one
                        raise
                    continue
                except BaseException:
                    await conn.close()
                    raise
                self._idle.append(conn)
                return row
        raise AssertionError("unreachable")


_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections]" = weakref.WeakKeyDictionary()


async def _fetch_one(sql: str, params: list) -> tuple | None:
    loop = asyncio.get_running_loop()
    connections = _by_loop.get(loop)
    if connections is None:
        connections = _by_loop[loop] = _LoopConnections()
    return await connections.fetch_one(sql, params)


async def find_place(*, event_id: int, fan_id: int) -> selectors.Place | None:
    row = await _fetch_one(selectors.PLACE_SQL, [event_id, fan_id])
    return None if row is None else selectors.Place(event_id, fan_id, *row)


async def room_news(*, event_id: int) -> dict | None:
    row = await _fetch_one(selectors.ROOM_NEWS_SQL, [event_id])
    return None if row is None else selectors.room_news_from_row(event_id, row)


async def fan_for_api_token(key: str) -> int | None:
    """The id of the active fan whose DRF token this is, or None."""
    table = get_user_model()._meta.db_table
    row = await _fetch_one(
        f"SELECT u.id FROM authtoken_token t JOIN {table} u ON u.id = t.user_id WHERE t.key = %s AND u.is_active",
        [key],
    )
    return None if row is None else row[0]
