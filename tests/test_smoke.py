def test_healthz(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok"}


def test_each_request_warning_is_logged_once():
    """Django's default config gives its logger a console handler of its own: a 4xx was printed twice."""
    import logging

    handlers, logger = [], logging.getLogger("django.request")
    while logger is not None:
        handlers += logger.handlers
        logger = logger.parent if logger.propagate else None
    assert len(handlers) == 1
