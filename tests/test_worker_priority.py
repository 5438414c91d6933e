"""The worker's threads run at a lower CPU priority, so requests come first, all but the stream relay's:
one event in flight per stream, so a niced relay beside busy web processes fell seconds behind."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from activitylog.config import Settings
from activitylog.workers import Periodic, StreamRelayWorker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads' priorities: Linux")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class _Probe(Periodic):
    def __init__(self, settings: Settings, niced: bool) -> None:
        super().__init__(None, settings, 60.0)  # type: ignore[arg-type]
        self.niced, self.seen, self.ran = niced, -1, threading.Event()

    def run_once(self) -> int:
        self.seen = _own_nice()
        self.ran.set()
        return 0


def test_a_niced_thread_runs_lower_and_the_others_keep_their_priority(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", worker_nice=7)
    before = _own_nice()
    niced, normal = _Probe(settings, niced=True), _Probe(settings, niced=False)
    for probe in (niced, normal):
        probe.start()
        assert probe.ran.wait(10)
        probe.stop()
    assert (niced.seen, normal.seen) == (min(before + 7, 19), before)
    assert _own_nice() == before  # the caller's thread is untouched


def test_only_the_stream_relay_keeps_the_normal_priority() -> None:
    normal = {cls for cls in Periodic.__subclasses__() if not cls.niced}
    assert normal == {StreamRelayWorker}


def _nice_of_each_thread(pid: int) -> dict[int, int]:
    nice = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nice[int(task.name)] = int(fields[16])  # field 19 of stat; 3 of them come before the split
    return nice


def test_a_worker_process_runs_niced_but_its_relay(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ACTIVITYLOG_KEY_DIR": str(tmp_path / "keys"),
        "ACTIVITYLOG_WORKER_NICE": "10",
    }
    cli = Path(sys.executable).with_name("activitylog")
    subprocess.run([str(cli), "migrate"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen(
        [str(cli), "worker"], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    base = _own_nice()  # what the worker starts at
    niced = min(base + 10, 19)
    try:
        deadline = time.monotonic() + 30
        while True:
            nice = _nice_of_each_thread(worker.pid)
            if (nice.get(worker.pid) == niced and base in nice.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert nice[worker.pid] == niced, nice  # the main thread, once the workers are started
        assert sum(1 for n in nice.values() if n == niced) >= 5, nice  # the checkpointer, purger, ...
        assert base in nice.values(), nice  # the stream relay's thread
    finally:
        worker.terminate()
        worker.wait(timeout=30)
