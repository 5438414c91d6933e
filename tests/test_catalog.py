"""The dashboard's forms are built from the API's input schemas: a form cannot name a field the API lacks,
and an empty value clears a field only where the API's PATCH lets a null clear it."""

from __future__ import annotations

import pytest

from activitylog.web import schemas
from activitylog.web.dashboard.catalog import KINDS, FormField, cleaned, form


def test_a_form_field_the_schema_lacks_is_refused_when_the_form_is_built() -> None:
    with pytest.raises(TypeError, match="ListIn has no field 'nmae'"):
        form(schemas.ListIn, FormField("nmae", "Name"))


def test_an_empty_edit_clears_what_null_clears_in_the_api_and_keeps_a_secret() -> None:
    fields = KINDS["sending-domains"].edit_fields
    values = {"dkim_selector": "s1", "dkim_private_key": "", "return_path": "", "tracking_domain": ""}
    body = cleaned(fields, values, editing=True)
    assert body == {"dkim_selector": "s1", "return_path": None, "tracking_domain": None}
    patch = schemas.DomainPatch.model_validate(body).changes()
    assert patch == {"dkim_selector": "s1", "return_path": None, "tracking_domain": None}


def test_an_empty_edit_of_a_field_null_does_not_clear_leaves_it_unchanged() -> None:
    fields = KINDS["broadcasts"].edit_fields
    kept = {"name": "N", "subject": "S", "from_email": "a@example.com", "segment_id": "seg_1", "text": "hi"}
    body = cleaned(fields, {**kept, "list_id": "", "html": ""}, editing=True)
    assert body == {**kept, "html": None}  # the list is left as it is; the HTML body is cleared


def test_a_select_offers_the_values_the_schema_allows() -> None:
    (role,) = (f for f in KINDS["users"].create_fields if f.name == "role")
    assert [value for value, _ in role.choices] == ["owner", "admin", "member"]
    (status,) = (f for f in KINDS["contacts"].edit_fields if f.name == "status")
    assert [value for value, _ in status.choices] == ["subscribed", "unsubscribed"]
