"""One Redis connection pool per process for Django's cache.

Django keeps a cache object per thread, and its Redis backend builds a
connection pool per cache object. Under ASGI every request runs its view
in a thread of its own, so each request opened a new Redis connection (a
TCP connect plus redis-py's version lookup through importlib.metadata, a
few milliseconds) just to check a throttle. Pools made through this class
are shared by URL and options across the process's threads; redis-py
resets a pool in a forked child by itself.
"""

import threading

import redis


class SharedConnectionPool(redis.ConnectionPool):
    _shared: dict[tuple, redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> redis.ConnectionPool:
        key = (url, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with cls._lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
        return pool
