"""The application under test as users run it: ``activitylog serve --no-migrate --port P``, the command
``make run`` ends with (one web process per CPU, the worker process beside them), on a free loopback port.

Its web processes are found in ``/proc`` among ``serve``'s children: uvicorn's spawned ones, not the worker's
``-m activitylog worker`` (with one process, ``serve`` answers requests itself). One web
process serves each request, so a memory figure is the highest peak of any one of them; CPU adds them up.
"""

from __future__ import annotations

import json
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
ACTIVITYLOG = Path(sys.executable).with_name("activitylog")
STARTED = "Application startup complete."  # uvicorn's line once a process answers requests


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


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class MemoryProbe:
    """Peak RSS of processes over a stretch of work, the highest of any one: the kernel's high-water mark
    (VmHWM), reset at the start through ``/proc/<pid>/clear_refs`` when allowed, and a 20 ms VmRSS sampler
    as a cross-check."""

    pids: list[int]
    sampled_peak_kb: dict[int, int] = field(default_factory=dict)
    hwm_reset: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            for pid in self.pids:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.sampled_peak_kb = {pid: status_kb(pid, "VmRSS") or 0 for pid in self.pids}
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.pids:
                rss = status_kb(pid, "VmRSS")
                if rss is not None:
                    self.sampled_peak_kb[pid] = max(self.sampled_peak_kb.get(pid, 0), rss)

    def stop(self) -> int:
        """The highest peak RSS of any one process in kB since :meth:`start`."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        peaks = [
            max((status_kb(pid, "VmHWM") or 0) if self.hwm_reset else 0, self.sampled_peak_kb.get(pid, 0))
            for pid in self.pids
        ]
        return max(peaks, default=0)


@dataclass
class Server:
    url: str
    pid: int  # serve's own process
    processes: int  # web processes, as serve chose them

    def web_pids(self) -> list[int]:
        """The processes answering requests: uvicorn's spawned children, or serve itself with one."""
        if self.processes == 1:
            return [self.pid]
        return [pid for pid in children(self.pid) if "multiprocessing.spawn" in command_line(pid)]

    def rss_kb(self) -> int:
        """The largest web process's RSS now."""
        return max((status_kb(pid, "VmRSS") or 0 for pid in self.web_pids()), default=0)


@contextmanager
def serve(
    database_url: str,
    env: dict[str, str] | None = None,
    *,
    workdir: Path = DATA_DIR,
    port: int | None = None,
) -> Iterator[Server]:
    """``activitylog serve`` with the defaults ``make run`` uses, in ``workdir`` (its outbox lands there), its
    JSON log lines written to ``workdir/serve.log``; yields once every web process has started. ``env`` is
    the whole environment the server gets (the database's URL is added); without it, this process's own
    with a signing key file in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    if env is None:
        env = {**os.environ, "ACTIVITYLOG_SIGNING_KEY_FILE": str(workdir / "signing.key")}
    env = {**env, "ACTIVITYLOG_DATABASE_URL": database_url}
    processes = int(env.get("ACTIVITYLOG_WEB_PROCESSES") or 0) or os.cpu_count() or 1
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(ACTIVITYLOG), "serve", "--no-migrate", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_started(proc, url, log_path, processes)
            yield Server(url, proc.pid, processes)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_started(proc: subprocess.Popen[bytes], url: str, log_path: Path, processes: int) -> None:
    """Ready, and each web process past its start-up (a busy 2-core machine starts them slowly)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}; see {log_path}")
        try:
            ready = httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and len(_started_pids(log_path)) >= processes:
            return
        time.sleep(0.2)
    raise RuntimeError(f"serve did not start its {processes} web processes within 180 s; see {log_path}")


def _started_pids(log_path: Path) -> set[int]:
    started = set()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if isinstance(fields, dict) and fields.get("message") == STARTED:
            started.add(int(fields["pid"]))
    return started
