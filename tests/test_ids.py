"""Ids: ULIDs as the ULID specification writes them, sorting by their time."""

from __future__ import annotations

import random
import re

from activitylog.ids import new_id, ulid, ulid_text

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _by_definition(value: int) -> str:
    """Five bits a character, most significant first, over 130 bits (the top two are zero)."""
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def test_the_specifications_example_time_is_its_first_ten_characters() -> None:
    assert ulid_text(1469918176385, 0)[:10] == "01ARYZ6S41"  # ulid(1469918176385) in its README


def test_every_bit_lands_where_the_definition_puts_it() -> None:
    rng = random.Random(5)
    cases = [(0, 0), (2**48 - 1, 2**80 - 1)] + [
        (rng.getrandbits(48), rng.getrandbits(80)) for _ in range(2000)
    ]
    for millis, rand in cases:
        assert ulid_text(millis, rand) == _by_definition((millis << 80) | rand)


def test_ids_are_prefixed_ulids_that_sort_by_time() -> None:
    assert re.fullmatch(r"con_[0-9A-HJKMNP-TV-Z]{26}", new_id("con"))
    assert ulid_text(1000, 2**80 - 1) < ulid_text(1001, 0)
    assert len(ulid()) == 26
