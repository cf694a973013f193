"""A live run the tests write line by line, and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class LiveRun:
    """A Kilroy run directory owned by this (live) test process, written as it goes."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = run_id
        self.path = root / run_id
        self.path.mkdir(parents=True)
        (self.path / "run.pid").write_text(str(os.getpid()))

    def emit(self, event: str, at: float, **fields: Any) -> None:
        line = {"event": event, "run_id": self.run_id, "ts": iso(at), **fields}
        with open(self.path / "progress.ndjson", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def start(self, at: float) -> None:
        self.emit("stage_attempt_start", at, node_id="start", attempt=1, max=1)
        self.emit(
            "stage_attempt_end",
            at,
            node_id="start",
            attempt=1,
            max=1,
            status="success",
            failure_reason="",
        )
        self.emit("edge_selected", at, from_node="start", to_node="impl")
        self.emit("stage_attempt_start", at, node_id="impl", attempt=1, max=1)

    def finish(self, at: float) -> None:
        self.emit(
            "stage_attempt_end",
            at,
            node_id="impl",
            attempt=1,
            max=1,
            status="success",
            failure_reason="",
        )
        self.emit("run_completed", at, status="success")
        final = {"timestamp": iso(at), "status": "success", "run_id": self.run_id}
        (self.path / "final.json").write_text(json.dumps(final))


class Receiver:
    """Webhook bodies as they arrive; answers each POST with the next queued status (200
    once the queue is empty)."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.statuses: list[int] = []
        self.posts = 0
        self.url = ""

    def take(self, timeout: float = 120.0) -> dict[str, Any]:
        return self.bodies.get(timeout=timeout)

    def drained(self) -> list[dict[str, Any]]:
        out = []
        while not self.bodies.empty():
            out.append(self.bodies.get_nowait())
        return out


@contextmanager
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.posts += 1
            status = rec.statuses.pop(0) if rec.statuses else 200
            if status == 200:
                rec.bodies.put(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def wait_for(predicate: Any, timeout: float = 120.0) -> None:
    """Poll ``predicate`` until it holds (a condition, not a guess at how long it takes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)
