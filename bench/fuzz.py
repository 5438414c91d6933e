"""A long schema-fuzzing run: every schemathesis phase (examples, coverage, fuzzing, stateful) and every
check but ``positive_data_acceptance`` (see tests/test_schemathesis.py for why), against a real
``activitylog serve`` with a fresh account and API key.

    .venv/bin/python bench/fuzz.py                       # SQLite in a temporary directory, 200 examples
    .venv/bin/python bench/fuzz.py --examples 1000 --database-url postgresql://postgres@127.0.0.1/fuzz

The database must be empty or throw-away: the run creates, edits and deletes whatever it likes. Extra
arguments after ``--`` go to ``schemathesis run`` as they are (e.g. ``-- --phases coverage``). Exit status is
schemathesis's: 0 when nothing failed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> dict[str, str]:
    """Run an ``activitylog`` command and return the JSON on its last line."""
    out = subprocess.run(
        [str(VENV_BIN / "activitylog"), *args], env=env, capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return result


def wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited before it answered")
        try:
            httpx.get(f"{url}/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=200, help="max examples per operation and phase")
    parser.add_argument("--database-url", help="a throw-away database (default: SQLite in a temp dir)")
    parser.add_argument("--workers", default="2", help="schemathesis workers")
    parser.add_argument("extra", nargs="*", help="more `schemathesis run` arguments, after --")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="activitylog-fuzz-") as tmp:
        env = {
            **os.environ,
            "ACTIVITYLOG_DATABASE_URL": args.database_url or f"sqlite:///{tmp}/fuzz.db",
            "ACTIVITYLOG_SIGNING_KEY_FILE": f"{tmp}/signing.key",
        }
        subprocess.run([str(VENV_BIN / "activitylog"), "migrate"], env=env, check=True, capture_output=True)
        account = cli(
            env, "account", "create", "--name", "Fuzz", "--owner-email", "fuzz@example.com",
            "--password", "fuzz-password-1",
        )  # fmt: skip
        key = cli(env, "api-key", "create", "--account", account["account_id"], "--name", "fuzz")["key"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                [str(VENV_BIN / "activitylog"), "serve", "--port", str(port), "--no-migrate", "--no-workers"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until_up(url, server)
                started = time.monotonic()
                command = [
                    str(VENV_BIN / "schemathesis"), "run", f"{url}/openapi.json",
                    "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                    "--max-examples", str(args.examples), "--workers", args.workers,
                    "--header", f"Authorization: Bearer {key}", "--suppress-health-check", "all",
                    *args.extra,
                ]  # fmt: skip
                status = subprocess.run(command, cwd=tmp, check=False).returncode  # its cache stays in tmp
                print(f"fuzzing took {time.monotonic() - started:.0f} s; exit {status}")
            finally:
                server.terminate()
                server.wait(timeout=30)
        tracebacks = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line]
        print(f"server log: {len(tracebacks)} tracebacks")
        return status or (1 if tracebacks else 0)


if __name__ == "__main__":
    raise SystemExit(main())
