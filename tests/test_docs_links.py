"""The user's documentation lives in the repository: every relative link in README.md and docs/ resolves to
a file inside it, and docs/api.md carries the contract's sections."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_resolves_inside_the_repository(root: Path) -> None:
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(root) or not resolved.exists():
                broken.append(f"{page.relative_to(root)} -> {target}")
    assert broken == []


def test_the_api_reference_is_in_the_repository(root: Path) -> None:
    reference = (root / "docs" / "api.md").read_text()
    for heading in (
        "## Auth",
        "## The activity entry",
        "## Reading the log",
        "## Integrity",
        "## Account resources (REST, JSON)",
        "## Proofs: each account's log is a Merkle tree (RFC 6962 / RFC 9162)",
        "## Operating it",
    ):
        assert heading in reference, heading
    assert "](docs/api.md)" in (root / "README.md").read_text()


def test_the_readme_documents_every_setting_and_only_real_ones(root: Path) -> None:
    """The configuration table and ``Settings`` name the same variables, so neither drifts from the other."""
    from activitylog.config import Settings

    table = set(re.findall(r"^\| `ACTIVITYLOG_([A-Z0-9_]+)` \|", (root / "README.md").read_text(), re.M))
    declared = {name.upper() for name in Settings.model_fields}
    assert table - {"TEST_DATABASE_URL"} == declared  # the one variable the tests read, not the service
