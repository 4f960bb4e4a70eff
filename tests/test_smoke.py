def test_healthz(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok"}


def test_each_request_warning_is_logged_once():
    """Django's default config gives its logger a console handler of its own: a 4xx was printed twice."""
    import logging

    # Only the root logger's handler (and, under pytest, its capture handlers) may print it.
    for name in ("django.request", "django"):
        logger = logging.getLogger(name)
        assert logger.handlers == [] and logger.propagate, name
