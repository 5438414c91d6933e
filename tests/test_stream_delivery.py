"""Webhook delivery end to end, on both engines: a real HTTP receiver on loopback, every request verified by
the reference ``standardwebhooks`` package and by hand; order, retries, 410, out-of-order commits, a worker
killed mid-delivery, and checkpoint events that let the receiver prove it missed nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.chain import GENESIS
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.signing import load_signer
from activitylog.log.verify_export import inclusion_root, leaf_hash, open_checkpoint, parse_verifier_key
from activitylog.relay import relay as relay_module
from activitylog.relay.relay import StreamRelay, retry_delay
from activitylog.services import lists, streams
from factories import cli_uow, new_account
from stream_receiver import Receiver, receiving


def _settings(db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "stream_allow_private": True,
        "stream_timeout_seconds": 2.0,
        **overrides,
    }
    return Settings(**values)


def _account(db: Database) -> str:
    return new_account(db, "Streamed").account.id


def _stream(db: Database, account_id: str, url: str, settings: Settings, **values: Any) -> streams.Created:
    body = {"name": "SIEM", "type": "webhook", "url": url, **values}
    return streams.create_stream(cli_uow(db, account_id), body, settings)


def _work(db: Database, account_id: str, n: int) -> None:
    for i in range(n):
        lists.create_list(cli_uow(db, account_id), f"List {i}")


def _deliver_until(relay: StreamRelay, receiver: Receiver, done: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay.run_once()
        relay.drain()
        if done(receiver):
            return
        time.sleep(0.05)
    raise AssertionError(f"not delivered in time: {len(receiver.received)} requests")


def _verify_hmac(secret: str, r: Any) -> None:
    standardwebhooks.Webhook(secret).verify(r.body, r.headers)  # the reference verifier
    signed = f"{r.headers['webhook-id']}.{r.headers['webhook-timestamp']}.".encode() + r.body
    mac = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256).digest()
    assert r.headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert abs(int(r.headers["webhook-timestamp"]) - time.time()) < 60


@pytest.fixture
def relay(db: Database) -> Any:
    made: list[StreamRelay] = []

    def make(**overrides: Any) -> StreamRelay:
        r = StreamRelay(db, _settings(db, **overrides))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_every_entry_arrives_once_in_order_signed(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        created = _stream(db, account, receiver.url, _settings(db))
        assert created.secret is not None
        _work(db, account, 7)
        r = relay()
        _deliver_until(r, receiver, lambda rc: len(rc.entries()) >= 8)
        for got in receiver.received:
            _verify_hmac(created.secret, got)
        entries = receiver.entries()
    assert [e["action"] for e in entries] == ["stream.create"] + ["list.create"] * 7
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(seqs[0], seqs[0] + 8))
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert [g.id for g in receiver.received if g.json["type"] == "activity.entry"] == [
        f"{account}:{s}" for s in seqs
    ]
    body = receiver.received[0].json
    assert set(body) == {"type", "timestamp", "data"} and body["timestamp"] == body["data"]["occurred_at"]
    view = streams.view(db.for_account(account), created.stream)
    assert view["delivered_seq"] == seqs[-1] and view["state"] == "active" and view["lag_seconds"] == 0
    delivered = streams.recent_deliveries(db.for_account(account), account, created.stream.id)
    assert delivered[0]["status_code"] == 200 and delivered[0]["seq"] == seqs[-1]


def test_ed25519_signatures_verify_with_the_public_key(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        created = _stream(db, account, receiver.url, _settings(db), signing="ed25519")
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(created.stream.public_key[5:]))  # type: ignore[index]
        _deliver_until(relay(), receiver, lambda rc: len(rc.entries()) >= 1)
        got = receiver.received[0]
    version, _, sig = got.headers["webhook-signature"].partition(",")
    assert version == "v1a"
    public.verify(base64.b64decode(sig), f"{got.id}.{got.headers['webhook-timestamp']}.".encode() + got.body)


def test_a_failing_destination_is_retried_with_the_same_id_and_order_holds(
    db: Database, relay: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "FIRST_RETRY", 0.2)
    account = _account(db)
    with receiving() as receiver:
        calls = {"n": 0}

        def answer(_r: Any) -> int:
            calls["n"] += 1
            return 500 if calls["n"] <= 2 else 200

        receiver.answer = answer
        created = _stream(db, account, receiver.url, _settings(db))
        _work(db, account, 3)
        _deliver_until(relay(), receiver, lambda rc: len(rc.entries()) >= 4)
        got = list(receiver.received)
    first = got[0].id
    assert [g.id for g in got[:3]] == [first] * 3  # two failures, then the same event again
    for g in got[:3]:  # each attempt signed for its own timestamp
        assert created.secret is not None
        _verify_hmac(created.secret, g)
    stamps = [int(g.headers["webhook-timestamp"]) for g in got[:3]]
    assert stamps == sorted(stamps)
    assert [e["seq"] for e in receiver.entries()] == sorted(e["seq"] for e in receiver.entries())
    attempts = streams.recent_deliveries(db.for_account(account), account, created.stream.id)
    assert [a["status_code"] for a in reversed(attempts)][:3] == [500, 500, 200]
    assert [a["attempt"] for a in reversed(attempts)][:3] == [1, 2, 3]


def test_backoff_starts_within_five_seconds_and_is_capped_at_ten_minutes() -> None:
    assert 0 < retry_delay(1) <= 5
    assert retry_delay(2) > retry_delay(1) * 1.5 or retry_delay(2) >= 4
    assert all(retry_delay(n) <= 600 for n in range(1, 40))
    assert retry_delay(30) >= 480


def test_410_disables_the_stream_with_an_entry_by_the_system(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        receiver.answer = lambda _r: 410
        created = _stream(db, account, receiver.url, _settings(db))
        r = relay()
        _deliver_until(r, receiver, lambda rc: len(rc.received) >= 1)
        time.sleep(0.2)
        r.run_once()
        r.drain()
        assert len(receiver.received) == 1  # disabled: nothing more is sent
    stream = streams.get_stream(db.for_account(account), account, created.stream.id)
    assert stream.state == "disabled"
    with db.for_account(account).reader() as session:
        from sqlalchemy import select

        from activitylog.db.models import ActivityEntry

        last = (
            session.execute(
                select(ActivityEntry)
                .where(ActivityEntry.account_id == account)
                .order_by(ActivityEntry.seq.desc())
            )
            .scalars()
            .first()
        )
    assert last is not None and last.action == "stream.disable"
    assert (last.actor_type, last.actor_id) == ("system", "streams")


def test_a_paused_stream_waits_and_resumes_where_it_stopped(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        created = _stream(db, account, receiver.url, _settings(db))
        r = relay()
        _deliver_until(r, receiver, lambda rc: len(rc.entries()) >= 1)
        streams.pause_stream(cli_uow(db, account), created.stream.id)
        _work(db, account, 2)
        r.run_once()
        r.drain()
        assert len(receiver.entries()) == 1
        streams.resume_stream(cli_uow(db, account), created.stream.id)
        _deliver_until(r, receiver, lambda rc: len(rc.entries()) >= 5)
        actions = [e["action"] for e in receiver.entries()]
    assert actions == ["stream.create", "stream.pause", "list.create", "list.create", "stream.resume"]


def test_replay_sends_again_with_the_same_ids(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        created = _stream(db, account, receiver.url, _settings(db))
        _work(db, account, 2)
        r = relay()
        _deliver_until(r, receiver, lambda rc: len(rc.entries()) >= 3)
        first = [g.id for g in receiver.received]
        start = receiver.entries()[0]["seq"]
        streams.replay_stream(cli_uow(db, account), created.stream.id, start)
        _deliver_until(r, receiver, lambda rc: len(rc.received) >= 7)
        again = [g.id for g in receiver.received][3:]
    assert again[:3] == first and again[3] == f"{account}:{start + 3}"  # then the replay's own entry


def test_a_filtered_stream_gets_only_its_matches_and_moves_past_the_rest(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        created = _stream(db, account, receiver.url, _settings(db), filter={"action": "list.delete"})
        _work(db, account, 3)
        r = relay()
        r.run_once()
        r.drain()
        assert receiver.received == []
        cursor = streams.view(db.for_account(account), created.stream)["delivered_seq"]
        with db.for_account(account).reader() as session:
            from activitylog.log.follow import committed_head

            assert cursor == committed_head(session, account)
        target = lists.create_list(cli_uow(db, account), "Doomed")
        lists.delete_list(cli_uow(db, account), target.id)
        _deliver_until(r, receiver, lambda rc: len(rc.entries()) >= 1)
    assert [e["action"] for e in receiver.entries()] == ["list.delete"]
    assert not any(g.json["type"] == "activity.checkpoint" for g in receiver.received)


def test_out_of_order_commits_never_skip_an_entry(db: Database, relay: Any) -> None:
    """Two transactions on two accounts that commit in the reverse order of their start: the first one's
    entry is delivered once it commits, never skipped (a cursor per account, not one id across them)."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its transactions commit in the order they start")
    a, b = _account(db), _account(db)
    with receiving("/a") as recv_a, receiving("/b") as recv_b:
        _stream(db, a, recv_a.url, _settings(db))
        _stream(db, b, recv_b.url, _settings(db))
        r = relay()
        _deliver_until(r, recv_a, lambda rc: len(rc.entries()) >= 1)
        _deliver_until(r, recv_b, lambda rc: len(rc.entries()) >= 1)
        slow = cli_uow(db, a)
        with slow:  # starts first, appends, and does not commit yet
            from activitylog.db.models import MailingList
            from activitylog.ids import new_id

            row = MailingList(id=new_id("lst"), account_id=a, name="Slow", created_at=slow.clock())
            slow.add(row)
            slow.record("list.create", row)
            _work(db, b, 1)  # starts later, commits first
            _deliver_until(r, recv_b, lambda rc: len(rc.entries()) >= 2)
            r.run_once()
            r.drain()
            assert len(recv_a.entries()) == 1  # nothing uncommitted goes out
            slow.commit()
        _deliver_until(r, recv_a, lambda rc: len(rc.entries()) >= 2)
    got = recv_a.entries()
    assert got[1]["seq"] == got[0]["seq"] + 1 and got[1]["resource"]["name"] == "Slow"


def test_one_stream_is_delivered_by_one_worker_at_a_time(db: Database, relay: Any) -> None:
    account = _account(db)
    with receiving() as receiver:
        receiver.delay = 0.05
        _stream(db, account, receiver.url, _settings(db))
        _work(db, account, 10)
        workers = [relay(), relay(), relay()]
        threads = [
            threading.Thread(
                target=lambda w=w: _deliver_until(w, receiver, lambda rc: len(rc.entries()) >= 11)
            )
            for w in workers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [g.id for g in receiver.received]
    assert len(ids) == len(set(ids)) == 11  # no event twice, so never two workers on it at once


WORKER = textwrap.dedent(
    """
    import sys, time
    from activitylog.config import Settings
    from activitylog.db.base import connect
    from activitylog.relay.relay import StreamRelay
    db = connect(sys.argv[1])
    relay = StreamRelay(db, Settings(database_url=sys.argv[1], stream_allow_private=True,
                                     stream_timeout_seconds=1.0))
    print("ready", flush=True)
    while True:
        relay.run_once()
        time.sleep(0.05)
    """
)


def test_a_worker_killed_mid_delivery_loses_nothing(db: Database, tmp_path: Path) -> None:
    account = _account(db)
    with receiving() as receiver:
        receiver.delay = 0.3  # each delivery is in flight for a while: a kill lands in one
        _stream(db, account, receiver.url, _settings(db))
        _work(db, account, 12)
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        env = {**os.environ}
        kills = 0
        deadline = time.monotonic() + 120
        while len(receiver.entries()) < 13 and time.monotonic() < deadline:
            proc = subprocess.Popen([sys.executable, str(script), db.url], stdout=subprocess.PIPE, env=env)
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            if kills < 3:
                time.sleep(1.0)
                proc.send_signal(signal.SIGKILL)
                kills += 1
                proc.wait()
                continue
            try:
                receiver.wait_for(lambda rc: len(rc.entries()) >= 13, timeout=60)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        ids = [g.id for g in receiver.received]
        entries = receiver.entries()
    assert kills == 3
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(seqs[0], seqs[0] + 13)), "every entry once after de-duplication, in order"
    # duplicates only as retries of one event, with the same id, right after it
    for i in range(1, len(ids)):
        if ids[i] in ids[:i]:
            assert ids[i] == ids[i - 1] or ids[i] in ids[max(0, i - 3) : i]


def test_checkpoint_events_let_the_receiver_prove_it_missed_nothing(db: Database, relay: Any) -> None:
    account = _account(db)
    settings = _settings(db, stream_checkpoint_entries=5)
    with receiving() as receiver:
        _stream(db, account, receiver.url, settings, from_seq=1)
        _work(db, account, 9)
        two = lambda rc: sum(b["type"] == "activity.checkpoint" for b in rc.bodies()) >= 2  # noqa: E731
        _deliver_until(relay(stream_checkpoint_entries=5), receiver, two)
        bodies = [g.json for g in receiver.received]
        ids = [g.id for g in receiver.received]
    checkpoints = [b for b in bodies if b["type"] == "activity.checkpoint"]
    assert [c["data"]["seq"] for c in checkpoints] == [5, 10]
    assert f"{account}:checkpoint:5" in ids
    assert ids.index(f"{account}:checkpoint:5") == ids.index(f"{account}:5") + 1  # in order
    signer = CheckpointSigner(settings, load_signer(settings))
    key = parse_verifier_key(signer.verifier_key(account))  # obtained out of band
    held: list[dict[str, Any]] = []
    for body in bodies:
        if body["type"] == "activity.entry":
            held.append(body["data"])
            continue
        data = body["data"]
        n = data["seq"]
        note = open_checkpoint(data["checkpoint"], key)
        assert note.size == n
        assert [e["seq"] for e in held[:n]] == list(range(1, n + 1)), "every entry from the first to N"
        prev = GENESIS
        for e in held[:n]:
            assert e["prev_hash"] == prev, "linked by prev_hash"
            prev = e["hash"]
        assert data["hash"] == prev == held[n - 1]["hash"]
        path = [base64.b64decode(h) for h in data["inclusion"]]
        assert inclusion_root(n - 1, n, leaf_hash(data["hash"]), path) == note.root


def test_activitylog_worker_runs_the_relay(tmp_path: Path) -> None:
    """``activitylog worker`` (which ``serve`` starts beside itself) delivers streams."""
    from activitylog.db.base import connect
    from activitylog.db.migrate import upgrade

    fresh = connect(f"sqlite:///{tmp_path / 'worker.db'}")
    upgrade(fresh)
    account = _account(fresh)
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": fresh.url,
        "ACTIVITYLOG_STREAM_ALLOW_PRIVATE": "true",
        "ACTIVITYLOG_WORKER_NICE": "0",
    }
    with receiving() as receiver:
        _stream(fresh, account, receiver.url, _settings(fresh))
        _work(fresh, account, 2)
        proc = subprocess.Popen(
            [sys.executable, "-m", "activitylog", "worker"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            receiver.wait_for(lambda rc: len(rc.entries()) >= 3, timeout=30)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert [e["action"] for e in receiver.entries()] == ["stream.create", "list.create", "list.create"]
    fresh.dispose()
