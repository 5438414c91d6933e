"""An exported CSV opened by a real spreadsheet evaluates nothing: entries whose text begins with ``=``,
``+``, ``-``, ``@``, tab or CR are exported through the API, and headless LibreOffice Calc imports the file
with formula evaluation on, as a user opening it would, and saves it as xlsx; the sheet holds no formula
cell and no computed value. A control file with the same text unescaped does become formulas (Calc
evaluates the ``=`` ones; Excel would also take ``+``, ``-`` and ``@``), so the check can fail.

Both engines, because each has its own fast CSV path (see log/csv_sql.py).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from activitylog.log.record import Actor, RequestContext, ResourceRef, record
from conftest import Server, make_tenant

SOFFICE = shutil.which("soffice")
# separator ",", quote '"', UTF-8, from line 1, ..., and the 13th token: evaluate formulas
CSV_IMPORT = "Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,0,true"
BY_API = ['=HYPERLINK("http://x","y")', "=1+1", "+1+1", "-1+1", "@SUM(1,1)"]
NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
BY_SERVICE = ["\t=1+1", "\r=1+1"]  # names cannot hold control characters; other text may


def to_xlsx(*sources: Path, out: Path) -> list[Path]:
    """Open each CSV in LibreOffice Calc and save it as xlsx (a private profile, so runs do not clash)."""
    assert SOFFICE is not None
    profile = out / "profile"
    subprocess.run(
        [SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
         f"--infilter={CSV_IMPORT}", "--convert-to", "xlsx", "--outdir", str(out), *map(str, sources)],
        capture_output=True, timeout=180, check=True,
    )  # fmt: skip
    converted = [out / f"{s.stem}.xlsx" for s in sources]
    assert all(p.exists() for p in converted), "LibreOffice produced no xlsx"
    return converted


def read_sheet(xlsx: Path) -> tuple[int, dict[str, str]]:
    """The number of formula cells, and every cell's shown text by reference (``M2``)."""
    with zipfile.ZipFile(xlsx) as z:
        sheet = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
        names = z.namelist()
        shared_xml = z.read("xl/sharedStrings.xml") if "xl/sharedStrings.xml" in names else b"<sst/>"
    shared = ["".join(t.text or "" for t in si.iter(f"{NS}t")) for si in ElementTree.fromstring(shared_xml)]
    formulas, shown = 0, {}
    for cell in sheet.iter(f"{NS}c"):
        formulas += cell.find(f"{NS}f") is not None
        value = cell.find(f"{NS}v")
        text = "" if value is None or value.text is None else value.text
        shown[cell.attrib["r"]] = shared[int(text)] if cell.get("t") == "s" else text
    return formulas, shown


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed")
def test_a_spreadsheet_evaluates_nothing_in_an_export(server: Server, tmp_path: Path) -> None:
    tenant = make_tenant(server, name="Sheet Co")
    with tenant.key_client() as client:
        for name in BY_API:
            assert client.post("/api/v1/lists", json={"name": name}).status_code == 201
    with server.db.for_account(tenant.account_id).writer() as session:
        for name in BY_SERVICE:
            record(
                session,
                account_id=tenant.account_id,
                actor=Actor("system", "cli", name),
                context=RequestContext(),
                action="list.update",
                resource=ResourceRef("list", "lst_sheet", name),
                changes={"name": {"from": None, "to": name}},
            )
        session.commit()
    with tenant.key_client() as client:
        export = client.get("/api/v1/activity/export", params={"resource_type": "list", "format": "csv"})
    assert export.status_code == 200
    exported = tmp_path / "export.csv"
    exported.write_bytes(export.content)
    rows = list(csv.DictReader(exported.open(newline="", encoding="utf-8")))
    assert [r["resource_name"] for r in rows] == ["'" + n for n in BY_API + BY_SERVICE]  # escaped once

    control = tmp_path / "control.csv"
    with control.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["name"], *([n] for n in BY_API)])

    sheet, unescaped = to_xlsx(exported, control, out=tmp_path)
    control_formulas, _ = read_sheet(unescaped)
    assert control_formulas >= 2, "the control must show that Calc evaluates formulas on import"
    formulas, shown = read_sheet(sheet)
    assert formulas == 0
    column = {shown[f"{c}1"]: c for c in "ABCDEFGHIJKLMNOPQR"}
    for row, name in enumerate(BY_API + BY_SERVICE, start=2):
        for header in ("resource_name", "actor_name", "summary"):
            text = shown.get(f"{column[header]}{row}", "")
            assert text not in ("2", "y", "0"), (header, name, text)  # nothing computed, no link text
        as_text = shown[f"{column['resource_name']}{row}"].replace("\n", "\r" if name[0] == "\r" else "\n")
        assert as_text in (name, "'" + name), name  # shown as the text it is (Calc reads a lone CR as LF)
