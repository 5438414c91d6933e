"""A real webhook receiver on loopback for the stream tests: it keeps every request it gets (headers and
body) and answers what the test scripts (e.g. 500 for the first two attempts, then 200; a 410; a delay).
Each receiver listens on a path of its own and answers 404 elsewhere: the tests share a database, so a stream
an earlier test left behind may still be retrying a port this receiver has been given since."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answer: Callable[[Received], int] = lambda _r: 200
        self.delay = 0.0
        self.lock = threading.Lock()
        self.url = ""

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.json for r in self.received]

    def entries(self) -> list[dict[str, Any]]:
        """The entry events accepted (2xx), de-duplicated by webhook-id, in arrival order."""
        seen: dict[str, dict[str, Any]] = {}
        with self.lock:
            for r in self.received:
                if getattr(r, "status", 200) < 300 and r.json["type"] == "activity.entry":
                    seen.setdefault(r.id, r.json["data"])
        return list(seen.values())

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(
            f"receiver: condition not met within {timeout} s; got {len(self.received)} requests"
        )


@contextmanager
def receiving(path: str = "/hook") -> Iterator[Receiver]:
    receiver = Receiver()
    own = f"{path}/{secrets.token_hex(6)}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if urlsplit(self.path).path != own:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            got = Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
            if receiver.delay:
                time.sleep(receiver.delay)
            status = receiver.answer(got)
            got.status = status  # type: ignore[attr-defined]
            with receiver.lock:
                receiver.received.append(got)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{own}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
