#!/usr/bin/env python3
"""Witness an account's activity log from outside: keep its signed checkpoints, and notice when a new one
does not extend the last one kept.

    python3 witness.py --url https://activity.example.com --account acc_… --state ~/witness [--key KEY]

A checkpoint is a promise that every later tree of the account extends it; the service's signer keeps its
own memory of that promise, but whoever holds both the database and the signing key can forge a whole new
history and sign it. A witness is a copy of the promise kept elsewhere: each run fetches the account's
current checkpoint, checks its signature against the verifier key it was first given (fetched on first use
and kept in its state, or pinned with ``--verifier-key``; never re-fetched), checks the service's
consistency proof from the last checkpoint it kept, and keeps the new one (API.md part 2, "A witness").

This file needs the standard library, ``cryptography`` for the signatures, and ``verify_export.py`` beside
it (the same checks an auditor runs on an export); it is also ``activitylog witness``. An API key with scope
``checkpoint:read`` suffices (``--key`` or ``ACTIVITYLOG_WITNESS_KEY``). Exit 0 when everything holds; 1,
naming the sizes, when the log was rewritten, rolled back or truncated, or the checkpoint is not signed by
the kept key; 2 when it cannot check (network, usage, missing ``cryptography``, unreadable state). It
prints one line either way; run it from cron and alert on anything but 0.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not POSIX: runs on one state are not serialized
    fcntl = None  # type: ignore[assignment]

try:
    from activitylog.log import verify_export as vx
except ImportError:  # a script beside verify_export.py, with no activitylog package installed
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import verify_export as vx  # type: ignore[no-redef]

OK, ALARM, CANNOT_CHECK = 0, 1, 2
KEY_ENV = "ACTIVITYLOG_WITNESS_KEY"
ACCOUNT_ID = re.compile(r"^acc_[0-9A-Za-z]{1,36}$")
USER_AGENT = "activitylog-witness/1"
MAX_ANSWER = 1 << 20  # a checkpoint or a proof is a few KiB; more is not an answer to check


class Alarm(Exception):
    """The log does not keep its promise (exit 1)."""


class Unverifiable(Exception):
    """The witness cannot tell (exit 2)."""


def _write_atomically(path: Path, text: str) -> None:
    """The whole new file or the old one, even across a crash: write beside it, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class State:
    """``<state>/<account>/``: ``verifier-key`` (kept on first use), ``checkpoint`` (the last one kept) and,
    after an alarm, ``conflicting-checkpoint`` (the signed note that broke the promise: the evidence)."""

    directory: Path

    def _read(self, name: str) -> str | None:
        path = self.directory / name
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise Unverifiable(f"cannot read the witness state {path}: {exc}") from None

    def _keep(self, name: str, text: str) -> Path:
        path = self.directory / name
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, text)
        except OSError as exc:
            raise Unverifiable(f"cannot write the witness state {path}: {exc}") from None
        return path

    def verifier_key(self) -> str | None:
        text = self._read("verifier-key")
        return None if text is None else text.strip()

    def keep_verifier_key(self, text: str) -> None:
        self._keep("verifier-key", text.strip() + "\n")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One run at a time per account (cron runs may overlap), so a slow run cannot keep an older
        checkpoint over a newer one."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = open(self.directory / "lock", "a")  # noqa: SIM115 (held for the whole run)
        except OSError as exc:
            raise Unverifiable(f"cannot use the witness state {self.directory}: {exc}") from None
        with lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def checkpoint(self) -> str | None:
        return self._read("checkpoint")

    def keep_checkpoint(self, note: str) -> None:
        self._keep("checkpoint", note)

    def keep_evidence(self, note: str) -> Path:
        return self._keep("conflicting-checkpoint", note)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the key along to wherever it points: refused, it is an HTTP 3xx error."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None


OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Service:
    url: str
    account: str
    key: str | None
    timeout: float

    def get(self, path: str, params: dict[str, int] | None = None, *, auth: bool = True) -> tuple[str, bytes]:
        """(content type, body) of a 200; anything else is Unverifiable, with the service's own words."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        headers = {"User-Agent": USER_AGENT, "Accept": "text/plain, application/json"}
        if auth and self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        # S310: main() lets only http(s) URLs through
        request = urllib.request.Request(f"{self.url}{path}{query}", headers=headers)  # noqa: S310
        try:
            with OPENER.open(request, timeout=self.timeout) as response:
                kind, body = response.headers.get("Content-Type", ""), response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                where = exc.headers.get("Location", "elsewhere")
                raise Unverifiable(
                    f"{path}: HTTP {exc.code} to {where}: not followed (the key would go along); fix --url"
                ) from None
            raise Unverifiable(f"{path}: HTTP {exc.code}: {_error_message(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise Unverifiable(f"cannot reach {self.url}: {reason}") from None
        if len(body) > MAX_ANSWER:
            raise Unverifiable(f"{path}: the answer is larger than {MAX_ANSWER} bytes")
        return kind, body

    def json(self, path: str, params: dict[str, int] | None = None, *, auth: bool = True) -> Any:
        _, body = self.get(path, params, auth=auth)
        try:
            return json.loads(body)
        except ValueError:
            raise Unverifiable(f"{path}: the answer is not JSON") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read(MAX_ANSWER))["error"]
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)
    if not isinstance(error, dict):
        return str(exc.reason)
    if error.get("code") == "history_rejected":
        return f"the service refuses to sign its tree: {error.get('message')}"
    return f"{error.get('code')}: {error.get('message')}"


def _pinned(value: str) -> str:
    """``--verifier-key``: the key itself, or a file holding it (as ``verify_export.py`` takes it)."""
    if "+" in value and not os.path.exists(value):
        return value.strip()
    try:
        with open(value, encoding="utf-8") as f:
            return f.read(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise Unverifiable(f"--verifier-key: not a verifier key, nor a readable file ({exc})") from None


def _verifier_key(args: argparse.Namespace, state: State, service: Service) -> vx.VerifierKey:
    """The kept key; on first use the pinned one or, trusting it once, the service's; kept from then on."""
    kept = state.verifier_key()
    pinned = _pinned(args.verifier_key) if args.verifier_key else None
    if kept is not None:
        if pinned is not None and pinned != kept:
            raise Unverifiable(
                f"--verifier-key differs from the key kept in {state.directory}; the kept one is what this "
                "witness vouches with (remove the state to start over on purpose)"
            )
        text = kept
    elif state.checkpoint() is not None:
        raise Unverifiable(f"{state.directory} keeps a checkpoint but no verifier key: the state is damaged")
    elif pinned is not None:
        text = pinned
    else:
        answer = service.json(f"/api/v1/accounts/{service.account}/verifier-key", auth=False)
        text = answer.get("verifier_key", "") if isinstance(answer, dict) else ""
        if not isinstance(text, str) or text.split("+", 1)[0] != answer.get("origin"):
            raise Unverifiable("the service's verifier-key answer is not {origin, verifier_key}")
    key = vx.parse_verifier_key(text)
    if not key.name.endswith("/" + service.account):
        raise Unverifiable(f"the verifier key is for {key.name!r}, not for account {service.account}")
    if kept is None:
        state.keep_verifier_key(text)
    return key


def _b64_hashes(path: str, values: Any) -> list[bytes]:
    try:
        hashes = [base64.b64decode(v, validate=True) for v in values]
    except (TypeError, ValueError):
        raise Unverifiable(f"{path}: the proof's hashes are not base64") from None
    if any(len(h) != 32 for h in hashes):
        raise Unverifiable(f"{path}: a proof hash is not 32 bytes")
    return hashes


def _fetch_checkpoint(service: Service, key: vx.VerifierKey, state: State) -> vx.Checkpoint:
    kind, body = service.get("/api/v1/activity/tree/checkpoint")
    if not kind.startswith("text/plain"):
        raise Unverifiable(f"the checkpoint answer is {kind or 'untyped'}, not text/plain")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Alarm("BAD CHECKPOINT: the service's checkpoint is not UTF-8 text") from None
    try:
        return vx.open_checkpoint(text, key)
    except vx.BadCheckpoint as exc:
        lines = text.split("\n")
        size = f" of tree size {lines[1]}" if len(lines) > 1 and lines[1].isdigit() else ""
        raise Alarm(
            f"BAD SIGNATURE: the service's checkpoint{size} does not check with the verifier key kept in "
            f"{state.directory} ({key.name}+{key.key_id.hex()}): {exc}"
        ) from None


def _check_extends(service: Service, state: State, kept: vx.Checkpoint, new: vx.Checkpoint) -> None:
    """Alarm unless ``new`` extends ``kept``; the conflicting note, being signed, is kept as evidence."""
    old_size, size = kept.size, new.size
    if size < old_size:
        where = state.keep_evidence(new.text)
        raise Alarm(
            f"ROLLED BACK: the service signs a tree of {size} entries, the witness kept a signed tree of "
            f"{old_size}: entries {size + 1}..{old_size} were removed (rolled back or truncated); "
            f"evidence in {where}"
        )
    if size == old_size:
        if new.root != kept.root:
            where = state.keep_evidence(new.text)
            raise Alarm(
                f"REWRITTEN: two signed roots for the tree of {size} entries (kept "
                f"{base64.b64encode(kept.root).decode()}, now {base64.b64encode(new.root).decode()}); "
                f"evidence in {where}"
            )
        return
    path = "/api/v1/activity/tree/consistency"
    proof = service.json(path, {"old_size": old_size, "tree_size": size})
    if not isinstance(proof, dict) or (proof.get("old_size"), proof.get("tree_size")) != (old_size, size):
        raise Unverifiable(f"{path}: the answer is not the proof {old_size} -> {size}")
    hashes = _b64_hashes(path, proof.get("hashes"))
    if not vx.consistency_holds(old_size, size, kept.root, new.root, hashes):
        where = state.keep_evidence(new.text)
        raise Alarm(
            f"REWRITTEN: the signed tree of {size} entries does not extend the tree of {old_size} the "
            f"witness kept (the consistency proof fails): some of entries 1..{old_size} were rewritten; "
            f"evidence in {where}"
        )


def witness(args: argparse.Namespace) -> str:
    """One run; returns the OK line, or raises Alarm or Unverifiable."""
    state = State(Path(args.state) / args.account)
    service = Service(args.url.rstrip("/"), args.account, args.key, args.timeout)
    with state.locked():
        return _witness(args, state, service)


def _witness(args: argparse.Namespace, state: State, service: Service) -> str:
    key = _verifier_key(args, state, service)
    kept_text = state.checkpoint()
    kept = None
    if kept_text is not None:
        try:
            kept = vx.open_checkpoint(kept_text, key)
        except vx.BadCheckpoint as exc:
            raise Unverifiable(
                f"the checkpoint kept in {state.directory} does not check with the kept key ({exc}): the "
                "state was altered"
            ) from None
    new = _fetch_checkpoint(service, key, state)
    root = base64.b64encode(new.root).decode()
    if kept is None:
        state.keep_checkpoint(new.text)
        return f"OK: {new.origin}: first checkpoint kept, tree of {new.size} entries, root {root}"
    _check_extends(service, state, kept, new)
    if new.size == kept.size:
        return f"OK: {new.origin}: unchanged since the kept checkpoint, tree of {new.size} entries"
    state.keep_checkpoint(new.text)
    return (
        f"OK: {new.origin}: the tree of {new.size} entries extends the kept one of {kept.size}; root {root}"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="witness",
        description="Keep an activity log's signed checkpoints and check that each new one extends the last.",
    )
    p.add_argument("--url", required=True, help="the service's base URL, e.g. https://activity.example.com")
    p.add_argument("--account", required=True, help="the account whose log to witness (acc_…)")
    p.add_argument("--state", required=True, help="the witness's directory (one subdirectory per account)")
    p.add_argument("--key", help=f"an API key with scope checkpoint:read (default: ${KEY_ENV})")
    p.add_argument(
        "--verifier-key",
        help="on first use, pin this note verifier key (or a file holding it), obtained out of band, "
        "instead of fetching it",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)  # bad usage exits 2, as argparse does
    args.key = args.key or os.environ.get(KEY_ENV)
    problem = None
    if not args.key:
        problem = f"give --key or set {KEY_ENV} (an API key with scope checkpoint:read)"
    elif urllib.parse.urlsplit(args.url).scheme not in ("http", "https") or "?" in args.url:
        problem = f"--url: not an http(s) base URL: {args.url!r}"
    elif not ACCOUNT_ID.match(args.account):
        problem = f"--account: not an account id (acc_…): {args.account!r}"
    elif not args.timeout > 0:
        problem = "--timeout: must be positive"
    if problem:
        print(f"CANNOT CHECK: {problem}", file=sys.stderr)
        return CANNOT_CHECK
    try:
        print(witness(args))
    except Alarm as exc:
        print(exc, file=sys.stderr)
        return ALARM
    except (Unverifiable, vx.CannotCheck) as exc:
        print(f"CANNOT CHECK: {exc}", file=sys.stderr)
        return CANNOT_CHECK
    return OK


if __name__ == "__main__":
    sys.exit(main())
