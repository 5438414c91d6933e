"""The user's documentation lives in the repository: every relative link in README.md and docs/ resolves to
a file inside it, docs/api.md carries the contract's sections, and its vocabulary and filter table are the
code's."""

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


def _words(text: str) -> set[str]:
    """The vocabulary words of a list in the reference, its parenthesised remarks left out."""
    return set(re.findall(r"[a-z_]+", re.sub(r"\([^)]*\)", "", text)))


def test_the_reference_names_every_verb_and_resource_type_and_no_others(root: Path) -> None:
    """Part 1's vocabulary and part 2's additions, together, are exactly what the log's actions are made
    of: a new action needs its words documented, and a documented word nothing uses is a stale one."""
    from activitylog.log.actions import ALL_ACTIONS

    reference = (root / "docs" / "api.md").read_text()
    part1 = re.search(r"Verbs: (.*?)\n- Resource types: (.*?)\n- `changes`", reference, re.S)
    part2 = re.search(r"Vocabulary added to part 1's: resource types (.*?); verbs (.*?)\.\n", reference, re.S)
    assert part1 and part2, "the reference's vocabulary lists moved: update this test with them"
    verbs = _words(part1.group(1)) | _words(part2.group(2))
    types = _words(part1.group(2)) | _words(part2.group(1))
    assert {a.split(".", 1)[1] for a in ALL_ACTIONS} == verbs
    assert {a.split(".", 1)[0] for a in ALL_ACTIONS} == types


def test_the_reference_describes_every_activity_filter(root: Path) -> None:
    from activitylog.log.filters import FILTERS

    reference = (root / "docs" / "api.md").read_text()
    table = reference.split("## Reading the log", 1)[1].split("Response:", 1)[0]
    rows = {
        name
        for cell in re.findall(r"^\| (`[^|]+`) \|", table, re.M)
        for name in re.findall(r"`([a-z_]+)`", cell)
    }
    assert {f.name for f in FILTERS} | {"limit", "cursor"} == rows
