"""A fan driving the running product over HTTP, as a browser or app would."""

import json
import re
import time
import uuid

import httpx

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class FanClient:
    def __init__(self, base_url: str, *, email: str | None = None, password: str = "a-long-fan-password"):
        self.base_url = base_url
        self.email = email or f"fan-{uuid.uuid4().hex[:10]}@example.com"
        self.password = password
        self.http = httpx.Client(base_url=base_url, timeout=15)
        self.token: str | None = None

    # --- API -----------------------------------------------------------
    def sign_up(self) -> dict:
        response = self.http.post("/api/v1/accounts/", json={"email": self.email, "password": self.password})
        assert response.status_code == 201, response.text
        body = response.json()
        self.token = body["token"]
        return body

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Token {self.token}"}

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def join(self, event_id: int) -> httpx.Response:
        return self.api("POST", f"/api/v1/events/{event_id}/queue/")

    def queue_status(self, event_id: int) -> dict:
        return self.api("GET", f"/api/v1/events/{event_id}/queue/").json()

    def book(self, event_id: int, quantity, access_token) -> httpx.Response:
        return self.api(
            "POST", "/api/v1/bookings/", json={"event": event_id, "quantity": quantity, "access_token": access_token}
        )

    def booking(self, booking_id: int) -> dict:
        return self.api("GET", f"/api/v1/bookings/{booking_id}/").json()

    def wait_for_booking(self, booking_id: int, status: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            booking = self.booking(booking_id)
            if booking["status"] == status or time.monotonic() > deadline:
                return booking
            time.sleep(0.2)

    def stream_until(self, event_id: int, predicate, *, timeout: float = 30, last_event_id: str | None = None):
        """Read the SSE stream; returns (frames seen, the first status satisfying predicate)."""
        frames = []
        headers = {**self.auth, "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        deadline = time.monotonic() + timeout
        with self.http.stream(
            "GET", f"/api/v1/events/{event_id}/queue/stream/", headers=headers, timeout=httpx.Timeout(timeout)
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            frame: dict = {}
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"stream did not reach the state; saw {frames}")
                if line == "":
                    if "data" in frame:
                        frame["status"] = json.loads(frame["data"])
                        frames.append(frame)
                        if predicate(frame["status"]):
                            return frames, frame["status"]
                    frame = {}
                elif line.startswith(":"):
                    frame.setdefault("comments", []).append(line)
                else:
                    field, _, value = line.partition(":")
                    frame[field] = value.lstrip(" ")
        raise AssertionError(f"stream ended; saw {frames}")

    # --- site pages (session) ----------------------------------------------
    def log_in_to_site(self) -> None:
        page = self.http.get("/login/")
        assert page.status_code == 200, page.text
        response = self.http.post(
            "/login/",
            data={
                "username": self.email,
                "password": self.password,
                "csrfmiddlewaretoken": CSRF_INPUT.search(page.text).group(1),
            },
        )
        assert response.status_code == 302, response.text

    def pay_on_pay_page(self, pay_url: str, card_number: str) -> httpx.Response:
        page = self.http.get(pay_url)
        assert page.status_code == 200, page.text
        return self.http.post(
            pay_url,
            data={
                "card_number": card_number,
                "exp_month": "12",
                "exp_year": str(time.gmtime().tm_year + 2),
                "cvc": "123",
                "csrfmiddlewaretoken": CSRF_INPUT.search(page.text).group(1),
            },
        )
