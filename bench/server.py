"""The application under test in its own process: uvicorn serving ``create_app`` on a loopback port.

Run as a script it is the server (``python bench/server.py DATABASE_URL PORT``); imported, :func:`serve`
starts it as a subprocess and yields a :class:`Server` whose memory can be read from ``/proc``. A separate
process means the server's peak RSS is its own, not the benchmark's, and the client never shares its GIL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DATA_DIR = Path(__file__).resolve().parent / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in kB (VmRSS, VmHWM, RssAnon, ...), or None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class MemoryProbe:
    """Peak RSS of one process over a stretch of work: the kernel's high-water mark (VmHWM), reset at the
    start through ``/proc/<pid>/clear_refs`` when allowed, and a 20 ms VmRSS sampler as a cross-check."""

    pid: int
    baseline_kb: int = 0
    sampled_peak_kb: int = 0
    hwm_reset: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.baseline_kb = status_kb(self.pid, "VmRSS") or 0
        self.sampled_peak_kb = self.baseline_kb
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            rss = status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.sampled_peak_kb = max(self.sampled_peak_kb, rss)

    def stop(self) -> int:
        """The peak RSS in kB since :meth:`start`."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        hwm = status_kb(self.pid, "VmHWM") if self.hwm_reset else None
        return max(hwm or 0, self.sampled_peak_kb)


@dataclass
class Server:
    url: str
    pid: int

    def rss_kb(self) -> int:
        return status_kb(self.pid, "VmRSS") or 0


@contextmanager
def serve(database_url: str) -> Iterator[Server]:
    """The real application under a real uvicorn, in a child process, on a free loopback port."""
    DATA_DIR.mkdir(exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": database_url,
        "ACTIVITYLOG_SIGNING_KEY_FILE": str(DATA_DIR / "bench-signing.key"),
    }
    proc = subprocess.Popen([sys.executable, __file__, database_url, str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url)
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before serving")
        try:
            httpx.get(url + "/openapi.json", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start within 60 s")


def main(database_url: str, port: int) -> None:
    import uvicorn  # noqa: PLC0415  (only the server process needs the web stack)

    from activitylog.config import Settings  # noqa: PLC0415
    from activitylog.web.app import create_app  # noqa: PLC0415

    app = create_app(Settings(database_url=database_url))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
