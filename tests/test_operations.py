"""Operating it: liveness and readiness through a real outage, the Prometheus metrics read back with
prometheus-client's own parser, one JSON log line per request, and ``serve``'s worker process (started and
stopped with it, restarted when it dies, doing the sending the web process no longer does)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from activitylog import metrics
from activitylog.db.base import Database, connect, normalize_url
from activitylog.db.migrate import upgrade
from activitylog.web.serving import listening_socket
from conftest import PG_ENV, Server, free_port, fresh_postgres_database, make_tenant, serving
from stream_receiver import receiving

# -- health and readiness ----------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_without_credentials(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")
        metrics = client.get("/metrics")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "signing_key": "ok"},
    }
    assert metrics.status_code == 404  # off unless ACTIVITYLOG_METRICS=true
    assert metrics.json()["error"]["code"] == "not_found"


def _wait_for(client: httpx.Client, path: str, status: int, seconds: float = 15) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_readiness_follows_a_postgresql_database_that_refuses_connections_and_comes_back() -> None:
    server_url = os.environ.get(PG_ENV)
    if not server_url:
        pytest.skip(f"PostgreSQL tests skipped: set {PG_ENV}")
    for url in fresh_postgres_database(server_url):
        db = connect(url)
        upgrade(db)
        name = make_url(normalize_url(url)).database
        admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")

        def refuse(refusing: bool) -> None:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not refusing).lower()}'))
                if refusing:  # and drop whoever is connected, the app's pool included
                    conn.execute(
                        text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                        {"n": name},
                    )

        try:
            with serving(db) as running:
                tenant = make_tenant(running)
                with httpx.Client(base_url=running.url, timeout=30) as client, tenant.key_client() as api:
                    assert client.get("/readyz").status_code == 200
                    refuse(True)
                    down = _wait_for(client, "/readyz", 503)
                    assert down.status_code == 503, down.text
                    assert down.json() == {
                        "status": "unavailable",
                        "checks": {"database": "unreachable", "migrations": "unknown", "signing_key": "ok"},
                    }
                    assert "postgres" not in down.text  # no host, user or driver message to the world
                    assert client.get("/healthz").status_code == 200  # the process itself is fine
                    refuse(False)
                    up = _wait_for(client, "/readyz", 200)
                    assert up.status_code == 200, up.text  # the same process, no restart
                    # the pool's connections died in the outage: a request that meets one is told 503
                    # (never a 500), and the pool reconnects for the next
                    statuses = [
                        api.post("/api/v1/lists", json={"name": "After"}).status_code for _ in range(2)
                    ]
                    assert statuses in ([201, 201], [503, 201]), statuses
        finally:
            refuse(False)
            db.dispose()
            admin.dispose()


def test_readiness_follows_a_sqlite_file_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    db = connect(f"sqlite:///{path}")
    upgrade(db)
    try:
        with serving(db) as running, httpx.Client(base_url=running.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            path.rename(tmp_path / "elsewhere.db")  # a volume unmounted, a file restored by mistake...
            down = client.get("/readyz")
            assert down.status_code == 503, down.text
            assert down.json()["checks"]["database"] == "unreachable"
            assert not path.exists()  # the probe never creates an empty database in its place
            (tmp_path / "elsewhere.db").rename(path)
            assert client.get("/readyz").status_code == 200
    finally:
        db.dispose()


def test_readiness_says_when_the_schema_is_behind_the_code(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db, "0008")
    try:
        with serving(db) as running, httpx.Client(base_url=running.url, timeout=30) as client:
            behind = client.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["checks"] == {"database": "ok", "migrations": "pending", "signing_key": "ok"}
    finally:
        db.dispose()


# -- metrics ----------------------------------------------------------------------------------------------


def _samples(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_template_appends_and_export_rows(db: Database) -> None:
    with serving(db, metrics=True) as running:
        tenant = make_tenant(running)
        with httpx.Client(base_url=running.url, timeout=30) as anonymous, tenant.key_client() as client:
            before = _samples(anonymous)
            list_ids = [
                client.post("/api/v1/lists", json={"name": f"List {i}"}).json()["id"] for i in range(3)
            ]
            for list_id in list_ids:
                assert client.get(f"/api/v1/lists/{list_id}").status_code == 200
            assert client.get("/api/v1/lists/lst_missing").status_code == 404
            csv = client.get("/api/v1/activity/export", params={"format": "csv", "resource_type": "list"})
            jsonl = client.get("/api/v1/activity/export", params={"format": "jsonl"})
            after = _samples(anonymous)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    one = {"method": "GET", "route": "/api/v1/lists/{list_id}"}
    assert delta("activitylog_http_requests_total", **one, status="200") == 3
    assert delta("activitylog_http_requests_total", **one, status="404") == 1
    assert delta("activitylog_http_request_duration_seconds_count", **one) == 4
    assert delta("activitylog_http_request_duration_seconds_bucket", **one, le="+Inf") == 4
    assert not [key for key in after if any(v.startswith("/api/v1/lists/lst_") for _, v in key[1])]
    # 3 lists and 2 exports, all logged; the first export's entry is a row of the second
    assert delta("activitylog_entries_appended_total") >= 5
    assert delta("activitylog_append_duration_seconds_count") >= 5
    csv_rows = len(csv.text.splitlines()) - 1
    jsonl_rows = len(jsonl.text.splitlines())
    assert csv_rows == 3
    assert delta("activitylog_export_rows_total", format="csv") == csv_rows
    assert delta("activitylog_export_rows_total", format="jsonl") == jsonl_rows
    assert _value(after, "activitylog_http_requests_total", method="GET", route="/metrics", status="200") >= 1


def test_features_register_metrics_of_their_own_once() -> None:
    lag = metrics.gauge("activitylog_test_feature_lag_seconds", "A feature's own gauge", ["stream"])
    assert metrics.gauge("activitylog_test_feature_lag_seconds", "again", ["stream"]) is lag
    lag.labels("str_1").set(2.5)
    with pytest.raises(ValueError, match="exists"):
        metrics.counter("activitylog_test_feature_lag_seconds", "a counter now")
    mine = metrics.REGISTRY.restricted_registry(["activitylog_test_feature_lag_seconds"])
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(mine).decode())}
    assert families["activitylog_test_feature_lag_seconds"].samples[0].value == 2.5


def test_a_collector_that_fails_at_a_scrape_leaves_only_its_own_samples_out() -> None:
    class Broken:
        def describe(self) -> list[Any]:
            return []

        def collect(self) -> list[Any]:
            raise RuntimeError("the database it reads is down")

    broken = Broken()
    metrics.register(broken)
    try:
        page = generate_latest(metrics.REGISTRY).decode()
    finally:
        metrics.unregister(broken)
    names = {family.name for family in text_string_to_metric_families(page)}
    assert "activitylog_entries_appended" in names


# -- the real serve process: log lines and the worker process --------------------------------------------


@contextmanager
def serve_process(
    url: str, tmp_path: Path, *args: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``activitylog serve`` as ``make run`` starts it (plus ``args``), its standard error in a file."""
    port = free_port()
    environment = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": url,
        "ACTIVITYLOG_WORKER_INTERVAL_SECONDS": "0.2",
        **env,
    }
    stderr = (tmp_path / "serve.err").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "activitylog", "serve", "--no-migrate", "--port", str(port), *args],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a busy 2-core machine imports slowly; a healthy one takes ~3 s
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.err").read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        stderr.close()


def _log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in (tmp_path / "serve.err").read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _all_children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    """The worker processes serve started (``activitylog worker``), not its web processes."""
    return [child for child in _all_children(pid) if b"worker" in _cmdline(child).split(b"\0")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _healthz_lines(folder: Path) -> list[dict[str, Any]]:
    return [line for line in _log_lines(folder) if line.get("route") == "/healthz"]


def _until(condition: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


@pytest.mark.slow
def test_serve_logs_one_json_line_per_request_without_query_strings(db: Database, tmp_path: Path) -> None:
    with serve_process(db.url, tmp_path, "--no-workers") as (base, _process):
        tenant = make_tenant(Server(url=base, db=db))
        with tenant.key_client() as client:
            listed = client.get(
                "/api/v1/activity",
                params={"q": "hunter2-in-a-query", "limit": 5},
                headers={"X-Request-ID": "ops-test-request-1"},
            )
            assert listed.status_code == 200
            assert client.get("/api/v1/lists/lst_nothere").status_code == 404
    text_of_log = (tmp_path / "serve.err").read_text()
    assert "hunter2-in-a-query" not in text_of_log and tenant.key not in text_of_log
    requests = [line for line in _log_lines(tmp_path) if line["logger"] == "activitylog.request"]
    mine = [line for line in requests if line["request_id"] == "ops-test-request-1"]
    assert len(mine) == 1
    line = mine[0]
    assert line["method"] == "GET" and line["route"] == "/api/v1/activity" and line["status"] == 200
    assert line["level"] == "info" and line["time"].endswith("Z") and line["duration_ms"] > 0
    missing = [line for line in requests if line["route"] == "/api/v1/lists/{list_id}"]
    assert [line["status"] for line in missing] == [404]
    assert all(line["request_id"] for line in requests)  # a generated id when the caller sent none


def test_an_unexpected_error_is_logged_by_its_route_and_without_the_statements_values(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500's log line names the route's template, not the path (``/suppressions/{email}`` holds an
    address), and a failed statement's error carries no bound values (an address, a name) into it."""
    address = f"someone-{secrets.token_hex(4)}@subscriber.example"

    def failing_route(app: FastAPI) -> None:
        @app.get("/api/v1/boom/{email}")
        def boom(email: str) -> None:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT * FROM no_such_table WHERE email = :email"), {"email": email})

    with serving(db, failing_route) as running, caplog.at_level(logging.ERROR):
        answer = httpx.get(f"{running.url}/api/v1/boom/{address}", timeout=30)
    assert answer.status_code == 500 and address not in answer.text
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "unhandled error on GET /api/v1/boom/{email}" in logged and "no_such_table" in logged
    assert address not in logged


@pytest.mark.slow
def test_the_worker_logs_no_line_per_delivered_event_nor_the_destinations_query(
    db: Database, tmp_path: Path
) -> None:
    token = f"token-{secrets.token_hex(8)}"
    with (
        receiving() as receiver,
        serve_process(db.url, tmp_path, ACTIVITYLOG_STREAM_ALLOW_PRIVATE="true") as (base, _process),
    ):
        tenant = make_tenant(Server(url=base, db=db))
        with tenant.key_client() as client:
            url = f"{receiver.url}?auth={token}"
            made = client.post("/api/v1/streams", json={"name": "SIEM", "type": "webhook", "url": url})
            assert made.status_code == 201, made.text
            for i in range(3):
                assert client.post("/api/v1/lists", json={"name": f"L{i}"}).status_code == 201
        receiver.wait_for(lambda r: len(r.entries()) >= 4, timeout=60)
    text_of_log = (tmp_path / "serve.err").read_text()
    assert token not in text_of_log
    assert not [line for line in _log_lines(tmp_path) if line["logger"].startswith(("httpx", "httpcore"))]


@pytest.mark.slow
def test_serve_runs_the_workers_in_a_process_it_restarts_and_stops(db: Database, tmp_path: Path) -> None:
    with serve_process(db.url, tmp_path) as (base, process):
        worker = _until(lambda: _children(process.pid))
        assert len(worker) == 1, worker
        first = worker[0]
        cmdline = Path(f"/proc/{first}/cmdline").read_bytes().split(b"\0")
        assert b"worker" in cmdline

        # the worker process does the sending: a broadcast sent through the API ends "sent"
        tenant = make_tenant(Server(url=base, db=db))
        with tenant.key_client() as client:
            list_id = client.post("/api/v1/lists", json={"name": "Readers"}).json()["id"]
            rows = [{"email": f"reader{i}@example.com"} for i in range(25)]
            assert client.post(f"/api/v1/lists/{list_id}/contacts/import", json=rows).status_code == 200
            body = {"name": "Hello", "subject": "Hi", "from_email": "news@example.com", "list_id": list_id}
            broadcast = client.post("/api/v1/broadcasts", json={**body, "text": "Hi"}).json()["id"]
            assert client.post(f"/api/v1/broadcasts/{broadcast}/send").status_code == 200

            def sent() -> bool:
                return bool(client.get(f"/api/v1/broadcasts/{broadcast}").json()["status"] == "sent")

            assert _until(sent), "the worker process did not send the broadcast"

        # a crash: serve says so and starts another worker
        os.kill(first, signal.SIGKILL)
        replaced = _until(lambda: [pid for pid in _children(process.pid) if pid != first])
        assert len(replaced) == 1, replaced
        exits = [line for line in _log_lines(tmp_path) if line.get("exit_code") == -signal.SIGKILL]
        assert exits and exits[0]["level"] == "error" and exits[0]["worker_pid"] == first
        assert httpx.get(f"{base}/healthz").status_code == 200  # the API never went away

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    assert not _alive(replaced[0]), "serve left its worker process running"


@pytest.mark.slow
def test_serve_answers_from_several_processes_that_share_what_they_know(db: Database, tmp_path: Path) -> None:
    """``serve --processes 2``: two processes answer on one port, and a verify one of them runs is the
    run every request joins, whichever process answers it."""
    with serve_process(db.url, tmp_path, "--processes", "2", "--no-workers", ACTIVITYLOG_METRICS="true") as (
        base,
        process,
    ):

        def web_processes() -> list[int]:  # uvicorn's spawned children (not multiprocessing's helpers)
            found = [p for p in _all_children(process.pid) if b"spawn_main" in _cmdline(p)]
            return found if len(found) >= 2 else []

        web = _until(web_processes)
        assert len(web) == 2 and _children(process.pid) == [], web
        tenant = make_tenant(Server(url=base, db=db))
        with tenant.key_client() as client:
            for i in range(5):
                assert client.post("/api/v1/lists", json={"name": f"Processes {i}"}).status_code == 201
        answers: list[int] = []
        deadline = time.monotonic() + 60
        while not answers or len({line["pid"] for line in _healthz_lines(tmp_path)}) < 2:
            assert time.monotonic() < deadline, "one process answered every connection"
            with ThreadPoolExecutor(8) as pool:  # a new connection each: the kernel hands them out
                answers += pool.map(lambda _: httpx.get(f"{base}/healthz").status_code, range(16))
        assert set(answers) == {200}
        answered_by = {line["pid"] for line in _healthz_lines(tmp_path)}
        assert answered_by == set(web)

        def verify(_: int) -> dict[str, Any]:
            with tenant.key_client() as client:  # a connection of its own, to either process
                return dict(client.get("/api/v1/activity/verify").json())

        with ThreadPoolExecutor(4) as pool:
            verdicts = list(pool.map(verify, range(8)))
        assert all(v["ok"] and v["checked"] == 8 for v in verdicts), verdicts
        verifiers = {
            line["pid"] for line in _log_lines(tmp_path) if line.get("route") == "/api/v1/activity/verify"
        }
        assert verifiers <= set(web)

        # /metrics, whichever process answers it, counts the requests both answered (shared each second)
        time.sleep(2.5)
        for _ in range(4):  # a new connection each: either process answers
            with httpx.Client(base_url=base) as anonymous:
                samples = _samples(anonymous)
            healthz = _value(
                samples, "activitylog_http_requests_total", method="GET", route="/healthz", status="200"
            )
            # every one the processes logged: these, and serve_process's readiness probes (more than one
            # when a busy machine answers the first after the probe gave up on it)
            assert healthz == len(_healthz_lines(tmp_path)), healthz
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    assert not any(_alive(pid) for pid in web), "serve left a web process running"


@pytest.mark.slow
def test_serve_without_workers_starts_no_worker_process(db: Database, tmp_path: Path) -> None:
    with serve_process(db.url, tmp_path, "--no-workers") as (_base, process):
        time.sleep(1)
        assert _children(process.pid) == []


@pytest.mark.slow
def test_a_worker_whose_serve_is_killed_stops_by_itself(db: Database, tmp_path: Path) -> None:
    with serve_process(db.url, tmp_path) as (_base, process):
        worker = _until(lambda: _children(process.pid))[0]
        running = _until(lambda: any(line["message"].startswith("worker: ") for line in _log_lines(tmp_path)))
        assert running, "the worker process did not start its work"
        process.kill()  # no chance to stop its worker
        process.wait()
        assert _until(lambda: not _alive(worker), seconds=60), "an orphaned worker kept running"


def test_the_socket_several_processes_share_sends_each_reply_without_waiting() -> None:
    """Every connection accepted on it has Nagle's algorithm off: a reply's second write (its body) goes out
    at once instead of waiting for the client's delayed ACK of the first (about 40 ms on a kept-alive
    connection)."""
    listener = listening_socket(
        uvicorn.Config("activitylog.web.app:from_environment", host="127.0.0.1", port=0)
    )
    try:
        listener.listen()  # the server's own loop does this in each process
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()


def test_each_serve_process_freezes_its_start_up_objects_out_of_the_collector(tmp_path: Path) -> None:
    """A full pass of the garbage collector over start-up's objects paused a request ~75 ms; frozen, the
    passes walk only what requests made since. Asked of a process built as each of serve's is."""
    script = "import gc; from activitylog.web.app import from_environment; from_environment(); "
    script += "print(gc.get_freeze_count())"
    env = {**os.environ, "ACTIVITYLOG_DATABASE_URL": f"sqlite:///{tmp_path / 'frozen.db'}"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) > 50_000
