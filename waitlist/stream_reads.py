"""The live stream's reads of Postgres, made on the event loop.

When a sale opens, thousands of fans open their stream within seconds, and
every one needs who they are and where they stand. Through Django's ORM each
read would be a hop to a worker thread, and those threads contend with the
event loop for the GIL: measured, the hops cost more than the queries. Here
each ASGI process keeps a small asyncio pool of its own and runs the same
single-query reads as waitlist.selectors, with no thread at all.
"""

import asyncio
import weakref

from django.contrib.auth import get_user_model
from django.db import connection
from psycopg_pool import AsyncConnectionPool

from waitlist import selectors

_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool]" = weakref.WeakKeyDictionary()
_opening: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()

POOL_SIZE = 4


def _conninfo() -> dict:
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}
    if db["PASSWORD"]:
        params["password"] = db["PASSWORD"]
    # Times come back in UTC, as from Django's own connections.
    params["options"] = "-c TimeZone=UTC"
    return {key: value for key, value in params.items() if value not in ("", None)}


async def _pool() -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is not None:
        return pool
    lock = _opening.setdefault(loop, asyncio.Lock())
    async with lock:
        if loop not in _pools:
            pool = AsyncConnectionPool(kwargs=_conninfo(), min_size=1, max_size=POOL_SIZE, open=False)
            await pool.open()
            _pools[loop] = pool
    return _pools[loop]


async def _fetch_one(sql: str, params: list) -> tuple | None:
    pool = await _pool()
    async with pool.connection() as conn, conn.cursor() as cursor:
        await cursor.execute(sql, params)
        return await cursor.fetchone()


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
