"""The detectors over real logs on both engines: each one with a case that must alert and a near miss that
must not, the history written with the recorder's clock (``UnitOfWork(clock=…)``) so weeks pass in a test;
losing the detectors' state and replaying the log gives the same alerts and no duplicates; raising is an
``alert.raise`` entry by ``system:alerts`` that streams carry as an OCSF Detection Finding."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text

from activitylog.alerts import policy as alert_policy
from activitylog.alerts import store
from activitylog.alerts.follower import AlertFollower
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, AlertCredential, AlertCursor, User
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.query import one_entry
from activitylog.log.record import Actor, RequestContext, ResourceRef
from activitylog.log.signing import load_signer
from activitylog.relay import ocsf
from activitylog.services import accounts, api_keys, lists, retention, suppressions, users
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from activitylog.services.verification import VerifyRuns
from conftest import PASSWORD, behind_the_apps_back, run_cli

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


class Clock:
    """The recorder's clock: entries take its time (never earlier than the previous entry's)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _ip(prefix: str = "10") -> str:
    """A fresh address per test: the test database is shared, and spray counts across accounts."""
    return f"{prefix}.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@dataclass
class History:
    db: Database
    account_id: str
    owner: User
    clock: Clock

    def uow(self, actor: Actor = SYSTEM_CLI, ip: str | None = None) -> UnitOfWork:
        return UnitOfWork(
            self.db, account_id=self.account_id, actor=actor, context=RequestContext(ip=ip), clock=self.clock
        )

    def at(self, moment: datetime) -> History:
        self.clock.at = moment
        return self

    def key(self, name: str = "Integration", scopes: list[str] | None = None) -> Actor:
        issued = api_keys.create_api_key(self.uow(), name=name, scopes=scopes or ["write"])
        return Actor(type="api_key", id=issued.key.id, name=name)

    def change(self, actor: Actor, ip: str | None) -> str:
        return lists.create_list(self.uow(actor, ip), f"List {uuid.uuid4().hex[:8]}").id


def history(db: Database, start: datetime) -> History:
    clock = Clock(start)
    created = accounts.create_account(
        db,
        name="Alerted",
        owner_email=f"owner-{uuid.uuid4().hex[:10]}@example.com",
        password=PASSWORD,
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=clock,
    )
    return History(db, created.account.id, created.owner, clock)


def detect(h: History, **settings: Any) -> list[dict[str, Any]]:
    """Run the detectors over the account's log until they caught up; its alerts, oldest first."""
    follower = AlertFollower(h.db, Settings(database_url=h.db.url, **settings), email=False)
    with h.db.for_account(h.account_id).reader() as session:
        cursor = session.execute(
            select(AlertCursor.seq).where(AlertCursor.account_id == h.account_id)
        ).scalar_one_or_none()
    follower.follow(h.account_id, -1 if cursor is None else cursor, max_batches=10_000)
    return alerts_of(h)


def alerts_of(h: History) -> list[dict[str, Any]]:
    rows, _ = store.page(h.db.for_account(h.account_id), h.account_id, limit=1000)
    return [store.as_api(a) for a in reversed(rows)]


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [a["kind"] for a in found]


def raised_seqs(h: History) -> list[int]:
    with h.db.for_account(h.account_id).reader() as session:
        return list(
            session.scalars(
                select(ActivityEntry.seq)
                .where(ActivityEntry.account_id == h.account_id, ActivityEntry.action == "alert.raise")
                .order_by(ActivityEntry.seq)
            )
        )


def stale_key_story(db: Database) -> tuple[History, Actor, str]:
    """The seed's story: a key used from one network for weeks, silent for 45 days, then acting from a new
    network. Returns the history, the key and the last use's instant."""
    h = history(db, NOW - 120 * DAY)
    key = h.key("Newsletter sync")
    home = "203.0.113."
    for day in range(0, 60, 2):
        h.at(NOW - (110 - day) * DAY).change(key, home + str(10 + day % 7))
    last_use = NOW - 51 * DAY
    h.at(last_use).change(key, home + "12")
    h.at(NOW - 6 * DAY).change(key, "198.51.100.77")
    return h, key, last_use.isoformat().replace("+00:00", "Z")


def test_the_stale_key_story_raises_one_new_ip_and_one_dormant_alert(db: Database) -> None:
    h, key, last_use = stale_key_story(db)
    found = detect(h)
    assert sorted(kinds(found)) == ["credential.dormant", "credential.new_ip"]
    new_ip = next(a for a in found if a["kind"] == "credential.new_ip")
    dormant = next(a for a in found if a["kind"] == "credential.dormant")
    assert new_ip["actor"] == {"type": "api_key", "id": key.id, "name": "Newsletter sync"}
    assert new_ip["ip"] == "198.51.100.77"
    assert (
        new_ip["figures"]["network"] == "198.51.100.0/24" and new_ip["figures"]["last_ip"] == "203.0.113.12"
    )
    assert dormant["figures"]["last_use"] == last_use and dormant["figures"]["idle_days"] == 45.0
    assert new_ip["seqs"] == dormant["seqs"] and new_ip["status"] == "open"
    # Raising is an entry by system:alerts, in the alert's own account; a second run raises nothing more.
    entries = [one_entry(db.for_account(h.account_id), h.account_id, s) for s in raised_seqs(h)]
    assert {(e["actor"]["type"], e["actor"]["id"]) for e in entries} == {("system", "alerts")}
    assert {e["resource"]["id"] for e in entries} == {a["id"] for a in found}
    assert detect(h) == found


def test_near_misses_of_the_credential_detectors(db: Database) -> None:
    h = history(db, NOW - 80 * DAY)
    key = h.key()
    h.at(NOW - 70 * DAY).change(key, "203.0.113.5")  # first use: never "new"
    h.at(NOW - 69 * DAY).change(key, "203.0.113.200")  # the same /24
    h.at(NOW - 40 * DAY).change(key, "203.0.113.9")  # 29 days idle: not dormant
    h.at(NOW - 39 * DAY).change(key, "2001:db8:1:aaaa::1")  # a new network: alerts (IPv6 /48)
    h.at(NOW - 38 * DAY).change(key, "2001:db8:1:bbbb::2")  # the same /48
    user = Actor(type="session", id=h.owner.id, name=h.owner.email)
    h.at(NOW - 30 * DAY).change(user, "192.0.2.1")
    h.at(NOW - 29 * DAY).change(user, "192.0.2.99")
    fresh = h.key("Fresh")
    h.at(NOW - 10 * DAY).change(fresh, "198.51.100.1")  # created 28 days ago, first used now: no alert
    found = detect(h)
    assert [(a["kind"], a["ip"]) for a in found] == [("credential.new_ip", "2001:db8:1:aaaa::1")]
    assert found[0]["figures"]["network"] == "2001:db8:1::/48"


def test_a_key_created_long_ago_and_first_used_now_is_dormant(db: Database) -> None:
    h = history(db, NOW - 50 * DAY)
    key = h.key("Forgotten")
    h.at(NOW - DAY).change(key, "198.51.100.3")
    assert kinds(detect(h)) == ["credential.dormant"]


def test_losing_the_detectors_state_rebuilds_it_from_the_log_without_duplicates(db: Database) -> None:
    h, _key, _ = stale_key_story(db)
    first = detect(h)
    with db.for_account(h.account_id).reader() as session:
        remembered = [
            (c.actor_type, c.actor_id, c.uses > 0, c.last_seen_at, c.last_ip, c.networks)
            for c in session.scalars(
                select(AlertCredential).where(AlertCredential.account_id == h.account_id)
            )
        ]
    with db.for_account(h.account_id).writer() as session:
        session.execute(delete(AlertCursor).where(AlertCursor.account_id == h.account_id))
        session.execute(delete(AlertCredential).where(AlertCredential.account_id == h.account_id))
        session.commit()
    assert detect(h) == first  # replayed from seq 1: the same alerts, none twice
    with db.for_account(h.account_id).reader() as session:
        rebuilt = [
            (c.actor_type, c.actor_id, c.uses > 0, c.last_seen_at, c.last_ip, c.networks)
            for c in session.scalars(
                select(AlertCredential).where(AlertCredential.account_id == h.account_id)
            )
        ]
    assert sorted(rebuilt) == sorted(remembered)
    # Only the credentials' state lost (the cursor kept): rebuilt from the credential's own entries.
    with db.for_account(h.account_id).writer() as session:
        session.execute(delete(AlertCredential).where(AlertCredential.account_id == h.account_id))
        session.commit()
    key = _key
    h.at(NOW - 5 * DAY).change(key, "198.51.100.78")  # the network it used yesterday: nothing new
    h.at(NOW - 4 * DAY).change(key, "192.0.2.200")  # a network it never used: new
    later = detect(h)
    assert kinds(later) == [*kinds(first), "credential.new_ip"]
    assert later[-1]["ip"] == "192.0.2.200"


def _delete_lists(h: History, actor: Actor, count: int, start: datetime, step: timedelta) -> None:
    made = [h.at(start).change(actor, "203.0.113.1") for _ in range(count)]
    for i, list_id in enumerate(made):
        lists.delete_list(h.at(start + i * step).uow(actor, "203.0.113.1"), list_id)


def test_burst_delete_alerts_once_and_its_near_miss_does_not(db: Database) -> None:
    h = history(db, NOW - 40 * DAY)
    user = Actor(type="session", id=h.owner.id, name=h.owner.email)
    h.at(NOW - 30 * DAY).change(user, "203.0.113.1")
    _delete_lists(h, user, 24, NOW - 20 * DAY, timedelta(seconds=20))  # 24 in 8 minutes: below 25
    assert kinds(detect(h)) == []
    # 20 deletes and 10 suppressions within 10 minutes: one alert for the burst, however long it goes on
    _delete_lists(h, user, 20, NOW - 10 * DAY, timedelta(seconds=10))
    for i in range(10):
        suppressions.suppress(
            h.at(NOW - 10 * DAY + timedelta(minutes=4, seconds=i)).uow(user, "203.0.113.1"),
            f"gone-{i}-{uuid.uuid4().hex[:6]}@example.com",
            None,
        )
    found = detect(h)
    assert kinds(found) == ["burst.delete"]
    assert found[0]["figures"]["count"] == 25 and len(found[0]["seqs"]) == 25
    assert found[0]["actor"]["id"] == h.owner.id


def test_a_burst_within_the_actors_own_rate_does_not_alert(db: Database) -> None:
    h = history(db, NOW - 40 * DAY)
    key = h.key()
    alert_policy.update(h.uow(), {"burst.delete": {"count": 3, "minutes": 1440}})
    for day in range(35, 5, -1):  # one delete a day for a month: its rate is 1 a window (a day)
        _delete_lists(h, key, 1, NOW - day * DAY, timedelta(seconds=1))
    _delete_lists(h, key, 4, NOW - 4 * DAY, timedelta(minutes=1))  # 4 < 5x its rate
    assert kinds(detect(h)) == []
    _delete_lists(h, key, 6, NOW - 2 * DAY, timedelta(minutes=1))  # 6 >= 5x
    assert kinds(detect(h)) == ["burst.delete"]


def _export(h: History, actor: Actor) -> None:
    uow = h.uow(actor, "203.0.113.1")
    with uow:
        uow.record("activity_log.export", ResourceRef("activity_log", h.account_id), {"rows": 10})
        uow.commit()


def test_burst_export_alerts_and_its_near_miss_does_not(db: Database) -> None:
    h = history(db, NOW - 40 * DAY)
    key = h.key()
    for i in range(9):
        _export(h.at(NOW - 20 * DAY + i * timedelta(minutes=1)), key)
    assert kinds(detect(h)) == []
    for i in range(10):
        _export(h.at(NOW - 10 * DAY + i * timedelta(seconds=50)), key)
    assert kinds(detect(h)) == ["burst.export"]


def _fail_sign_in(h: History, ip: str) -> None:
    anonymous = Actor(type="session", id="anonymous", name=h.owner.email)
    uow = h.uow(anonymous, ip)
    with uow:
        uow.record("user.login_failed", uow.get(User, h.owner.id), {})
        uow.commit()


def test_signin_failures_alert_at_ten_within_fifteen_minutes(db: Database) -> None:
    h = history(db, NOW - 10 * DAY)
    ip = _ip()
    for i in range(9):  # nine in 15 minutes, then the tenth 16 minutes after the first
        _fail_sign_in(h.at(NOW - 5 * DAY + i * timedelta(minutes=1)), ip)
    _fail_sign_in(h.at(NOW - 5 * DAY + timedelta(minutes=16)), ip)
    assert kinds(detect(h)) == []
    for i in range(12):
        _fail_sign_in(h.at(NOW - 2 * DAY + i * timedelta(minutes=1)), ip)
    found = detect(h)
    assert kinds(found) == ["signin.failures"]
    assert found[0]["figures"] == {"count": 10, "minutes": 15}


def test_signin_spray_across_accounts_uses_the_operators_thresholds(db: Database) -> None:
    start = NOW - 3 * DAY
    ip, other_ip = _ip(), _ip()
    victims = [history(db, start - DAY) for _ in range(3)]
    for i, h in enumerate(victims[:2]):
        _fail_sign_in(h.at(start + i * timedelta(minutes=2)), other_ip)  # two accounts: below three
    for i, h in enumerate(victims):  # three accounts within 15 minutes, but the third 20 minutes late
        _fail_sign_in(h.at(start + timedelta(hours=1) + i * timedelta(minutes=10)), ip)
    follower = AlertFollower(db, Settings(database_url=db.url, alert_spray_accounts=3), email=False)
    for h in victims:  # one worker checks every account: it remembers their failures by address
        follower.follow(h.account_id, -1)
    assert [kinds(alerts_of(h)) for h in victims] == [[], [], []]
    for i, h in enumerate(reversed(victims)):  # in any order of checking
        _fail_sign_in(h.at(start + timedelta(hours=2) + i * timedelta(minutes=3)), ip)
        follower.follow(h.account_id, detect_cursor(h))
    found = [alerts_of(h) for h in victims]
    assert [kinds(f) for f in found] == [["signin.spray"]] * 3
    assert {f[0]["ip"] for f in found} == {ip} and found[0][0]["figures"] == {"accounts": 3, "minutes": 15}
    _fail_sign_in(victims[0].at(start + timedelta(hours=2, minutes=9)), ip)  # the same spray goes on
    follower.follow(victims[0].account_id, detect_cursor(victims[0]))
    assert [kinds(alerts_of(h)) for h in victims] == [["signin.spray"]] * 3
    off = AlertFollower(db, Settings(database_url=db.url, alert_spray_accounts=0), email=False)
    for h in victims:
        _fail_sign_in(h.at(start + timedelta(hours=5)), ip)
        off.follow(h.account_id, detect_cursor(h))
    assert [kinds(alerts_of(h)) for h in victims] == [["signin.spray"]] * 3


def test_a_spray_in_progress_when_the_worker_restarts_is_still_alerted(db: Database) -> None:
    """The spray detector's memory is rebuilt from the log when a worker starts: failures checked before
    the restart count with the ones after it; a near miss (outside the window) still does not alert."""
    now, minute = datetime.now(UTC).replace(microsecond=0), timedelta(minutes=1)
    ip, near_ip = _ip(), _ip()
    victims = [history(db, now - DAY) for _ in range(3)]
    settings = Settings(database_url=db.url, alert_spray_accounts=3)
    before = AlertFollower(db, settings, email=False)
    for i, h in enumerate(victims[:2]):
        _fail_sign_in(h.at(now - 30 * minute + i * minute), near_ip)
        _fail_sign_in(h.at(now - 8 * minute + i * minute), ip)
    for h in victims:  # the worker checks them all (the third has nothing to see yet)
        before.follow(h.account_id, -1)
    assert [kinds(alerts_of(h)) for h in victims] == [[], [], []]
    # the third account fails from both addresses (from near_ip 25 minutes after the others) while the
    # worker restarts: the new one never met the first two accounts' failures, it finds them in the log
    _fail_sign_in(victims[2].at(now - 5 * minute), near_ip)
    _fail_sign_in(victims[2].at(now - 4 * minute), ip)
    after = AlertFollower(db, settings, email=False)
    after.follow(victims[2].account_id, detect_cursor(victims[2]))
    found = [alerts_of(h) for h in victims]
    assert [kinds(f) for f in found] == [["signin.spray"]] * 3
    assert {f[0]["ip"] for f in found} == {ip} and found[2][0]["figures"] == {"accounts": 3, "minutes": 15}
    for h, alerts in zip(victims, found, strict=True):  # each names its own account's failure from ip
        assert len(alerts[0]["seqs"]) == 1
        entry = one_entry(db.for_account(h.account_id), h.account_id, alerts[0]["seqs"][0])
        assert entry["action"] == "user.login_failed" and entry["ip"] == ip


def detect_cursor(h: History) -> int:
    with h.db.for_account(h.account_id).reader() as session:
        seq = session.execute(
            select(AlertCursor.seq).where(AlertCursor.account_id == h.account_id)
        ).scalar_one()
    return int(seq)


def test_sensitive_changes_alert_and_ordinary_ones_do_not(db: Database) -> None:
    h = history(db, NOW - 2 * DAY)
    member = users.create_user(
        h.uow(), email=f"m-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, role="member"
    )
    h.key("Reader", ["read"])  # near miss: not full
    retention.check_retention_days(500)
    accounts.update_account(h.uow(), log_retention_days=500)  # longer: near miss
    hold = retention.create_hold(h.uow(), reason="litigation", since=None, until=None)
    assert kinds(detect(h)) == []
    users.update_user(h.uow(), member.id, {"role": "admin"})
    h.key("Everything", ["full"])
    accounts.update_account(h.uow(), log_retention_days=400)
    retention.release_hold(h.uow(), hold.id)
    found = detect(h)
    assert kinds(found) == ["sensitive.change"] * 4
    summaries = " | ".join(a["summary"] for a in found)
    assert "got role admin" in summaries and "scope full" in summaries
    assert "shortened from 500 to 400" in summaries and "litigation was released" in summaries


def test_a_detector_turned_off_raises_nothing(db: Database) -> None:
    h = history(db, NOW - 3 * DAY)
    alert_policy.update(h.uow(), {"sensitive.change": {"enabled": False}})
    h.key("Everything", ["full"])
    assert kinds(detect(h)) == []


def test_a_failed_verify_raises_one_integrity_failure(db: Database) -> None:
    h = history(db, NOW - 3 * DAY)
    settings = Settings(database_url=db.url)
    runs = VerifyRuns(db, CheckpointSigner(settings, load_signer(settings)))
    assert runs.verify(h.account_id).as_api()["ok"]
    assert kinds(alerts_of(h)) == []  # the near miss: an intact log
    h.change(SYSTEM_CLI, None)
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("UPDATE activity_entries SET changes = :c WHERE account_id = :a AND seq = 2"),
            {"c": json.dumps({"name": {"from": None, "to": "forged"}}), "a": h.account_id},
        )
    for _ in range(2):
        run = runs.verify(h.account_id)
        assert not run.as_api()["ok"]
    found = alerts_of(h)
    assert kinds(found) == ["integrity.failure"]  # once while it is open
    assert found[0]["seqs"] == [2] and found[0]["actor"] is None


def test_the_cli_verify_raises_the_same_integrity_failure_as_the_apis(db: Database) -> None:
    h = history(db, NOW - 3 * DAY)
    h.change(SYSTEM_CLI, None)
    intact = run_cli("verify", "--account", h.account_id, db_url=db.url)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert kinds(alerts_of(h)) == []  # the near miss: an intact log
    with behind_the_apps_back(db) as conn:
        conn.execute(
            text("UPDATE activity_entries SET changes = :c WHERE account_id = :a AND seq = 2"),
            {"c": json.dumps({"name": {"from": None, "to": "forged"}}), "a": h.account_id},
        )
    for _ in range(2):
        broken = run_cli("verify", "--account", h.account_id, db_url=db.url)
        assert broken.returncode == 1 and "BROKEN at seq 2" in broken.stdout, broken.stdout + broken.stderr
    found = alerts_of(h)
    assert kinds(found) == ["integrity.failure"]  # once while it is open
    assert found[0]["seqs"] == [2] and found[0]["actor"] is None
    settings = Settings(database_url=db.url)
    api = VerifyRuns(db, CheckpointSigner(settings, load_signer(settings))).verify(h.account_id).as_api()
    assert not api["ok"] and found[0]["figures"] == {"reason": api["reason"]}
    assert kinds(alerts_of(h)) == ["integrity.failure"]  # the API's verify finds the same one open


def test_an_alert_raise_entry_is_an_ocsf_detection_finding(db: Database) -> None:
    from test_stream_ocsf import _valid

    h, _key, _ = stale_key_story(db)
    found = detect(h)
    entry = one_entry(db.for_account(h.account_id), h.account_id, raised_seqs(h)[0])
    event = ocsf.to_ocsf(entry)
    _valid(event)
    assert event["class_uid"] == 2004 and event["finding_info"]["uid"] in {a["id"] for a in found}
    assert event["finding_info"]["related_events"] == [{"uid": f"{h.account_id}:{found[0]['seqs'][0]}"}]
