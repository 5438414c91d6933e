"""``activitylog witness``: the stdlib witness (``tools/witness.py``) as a command of the CLI, run by
someone other than the service's operator; it touches no database and needs no signing key."""

from __future__ import annotations

from pathlib import Path

import typer

from activitylog.log import witness as witness_tool


def witness(
    url: str = typer.Option(..., help="The service's base URL, e.g. https://activity.example.com."),
    account: str = typer.Option(..., help="The account whose log to witness (acc_...)."),
    state: Path = typer.Option(..., help="The witness's directory: kept verifier key and checkpoint."),
    key: str = typer.Option(
        None, envvar=witness_tool.KEY_ENV, help="An API key with scope checkpoint:read.", show_default=False
    ),
    verifier_key: str = typer.Option(
        None, help="On first use, pin this note verifier key (or a file holding it) instead of fetching it."
    ),
    timeout: float = typer.Option(30.0, help="Seconds per request."),
) -> None:
    """Check that the account's signed checkpoint extends the last one this witness kept, and keep it;
    exit 0 if so, 1 naming the sizes if the log was rewritten, rolled back or truncated (or the signature
    fails), 2 if it cannot check."""
    argv = ["--url", url, "--account", account, "--state", str(state), "--timeout", str(timeout)]
    if key:
        argv += ["--key", key]
    if verifier_key:
        argv += ["--verifier-key", verifier_key]
    raise typer.Exit(witness_tool.main(argv))
