"""The bad-input corpus (tests/corpus, issue 7): every broken extract gets the outcome
`tests/corpus/expected.json` gives it, and no traceback ever reaches the operator.

Each corpus file is validated for 2026-03 under the demo scheme, with the clean roster and
attendance of `tests/corpus/clean/` for whichever of the two it does not replace (a required
source missing would reject the month whatever the case). The files are made by
`tests/corpus/make_corpus.py` and committed; what they must get is written by hand.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from etl.sources import source_of
from etl.validate import MonthValidation, validate_month
from reports.bonus_tables import COLUMNS, CSV_COLUMNS, bonus_rows, write_csv, write_xlsx
from scoring.scheme import load_scheme
from tests.corpus.make_corpus import INJECTION, cases
from tests.test_bonus_tables import allocation, header, read_csv, table

CORPUS = Path(__file__).resolve().parent / "corpus"
CLEAN = CORPUS / "clean"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text("utf-8"))["cases"]
FILES = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".csv", ".xlsx"))
MONTH = "2026-03"
# what a Python error looks like in a message: a traceback, an exception's class or repr, an
# object's address; plain sentences about files, lines and cells have none of it
PYTHON_ERROR = re.compile(
    r"Traceback|File \"|line \d+, in |\b\w*(?:Error|Exception|Warning)\b|\w\(['\"]|"
    r"<class |object at 0x|\\x[0-9a-f]{2}|errno"
)


def _entry(path: Path, source: str | None = None) -> dict[str, str]:
    return {
        "source": source or source_of(path.name),
        "name": path.name,
        "sha256": path.name,  # validation only carries it along
        "path": str(path),
    }


@functools.cache
def _scheme():
    return load_scheme("demo")


@functools.cache
def validated(file: str) -> MonthValidation:
    """The month of one corpus file, with the clean roster and attendance it does not replace.
    Cached: several tests look at the same validation."""
    source = source_of(file)
    files = [_entry(CORPUS / file)]
    files += [_entry(CLEAN / f"{s}.csv", s) for s in ("roster", "attendance") if s != source]
    return validate_month(files, MONTH, _scheme(), b"corpus-secret")


def messages(v: MonthValidation) -> list[str]:
    """Everything validation says to the operator: problems, reasons, quarantine reasons."""
    out = [m for r in v.reports.values() for m in r.problems]
    out += [k for r in v.reports.values() for k in r.reasons]
    out += [str(e["reason"]) for r in v.reports.values() for e in r.examples]
    return out + v.quarantine["reason"].astype(str).tolist()


def test_the_corpus_has_forty_files_or_more_each_with_its_expected_outcome():
    assert len(FILES) >= 40
    assert set(FILES) == set(EXPECTED)
    assert {e["verdict"] for e in EXPECTED.values()} == {"accepted", "quarantined", "rejected"}
    assert all(e.get("why") for e in EXPECTED.values())


def test_the_committed_files_are_what_make_corpus_writes():
    # a file edited by hand, or a generator changed without rerunning it, shows here
    assert {f: (CORPUS / f).read_bytes() for f in FILES} == cases()


@pytest.mark.parametrize("file", FILES)
def test_each_file_gets_its_expected_outcome(file):
    expected, source = EXPECTED[file], source_of(file)
    v = validated(file)
    rep = v.reports[source]
    assert rep.status == expected["verdict"], rep.problems
    q = v.quarantine[v.quarantine.source == source]
    if expected["verdict"] == "rejected":
        assert any(expected["message"] in p and file in p for p in rep.problems), rep.problems
    else:
        assert rep.problems == []
        assert rep.rows_in == expected["rows_in"]
        lines = dict(zip(q["line"].astype(str), q["reason"], strict=True))
        assert sorted(lines) == sorted(expected.get("lines", {}))
        for line, fragment in expected.get("lines", {}).items():
            assert fragment in lines[line], (line, lines[line])
        assert (q["file"] == file).all()
        assert rep.rows_quarantined == len(q)
        assert len(v.accepted[source]) == rep.rows_in - rep.rows_quarantined  # nothing dropped
    # the clean companions are untouched, but a month without a readable roster knows nobody
    roster_lost = source == "roster" and expected["verdict"] == "rejected"
    for other in {"roster", "attendance"} - {source}:
        status = v.reports[other].status
        assert status == ("rejected" if other == "attendance" and roster_lost else "accepted")


@pytest.mark.parametrize("file", FILES)
def test_no_traceback_ever_reaches_the_operator(file):
    v = validated(file)  # validate_month returned: nothing raised
    said = messages(v)
    assert said or EXPECTED[file]["verdict"] == "accepted"
    for text in said:
        assert not PYTHON_ERROR.search(text), text
    for rep in v.reports.values():
        names = tuple(f["name"] for f in rep.files)
        for problem in rep.problems:  # each starts with the file it is about
            assert problem.startswith(names), (names, problem)


def test_the_readable_files_together_through_great_expectations(tmp_path):
    """Great Expectations sees every odd value the readable files hold (100,000-character
    cells, injection payloads, error texts, rare characters) in one run, and builds its report."""
    readable = [f for f in FILES if EXPECTED[f]["verdict"] != "rejected"]
    files = [_entry(CORPUS / f) for f in readable]
    files += [_entry(CLEAN / f"{s}.csv", s) for s in ("roster", "attendance")]
    v = validate_month(files, MONTH, _scheme(), b"corpus-secret", docs_dir=tmp_path / "docs")
    index = (tmp_path / "docs" / "index.html").read_text("utf-8")
    summary = json.loads((tmp_path / "docs" / "summary.json").read_text("utf-8"))
    assert set(summary) == set(v.reports)
    assert {s: e["status"] for s, e in summary.items()} == {
        s: r.status for s, r in v.reports.items()
    }
    assert all(v.reports[s].gx_success is not None for s in ("roster", "attendance", "surveys"))
    ran = {s for s, r in v.reports.items() if r.gx_success is not None}
    assert ran == {"roster", "attendance", "cases", "surveys", "adjustments"}
    assert all(f"validations/kaohe_{s}/" in index for s in ran)  # each run is in the report
    # and GX fails exactly the sources with rows set aside: it saw the odd values as we did
    gx = {s: v.reports[s].gx_success for s in ran}
    assert gx == {s: v.reports[s].rows_quarantined == 0 for s in ran}
    assert not all(gx.values()) and any(gx.values())
    for text in messages(v):
        assert not PYTHON_ERROR.search(text), text


# --- what the operator and the people assessed see of particular cases ------------------------
def test_ids_with_leading_zeros_stay_text_end_to_end(tmp_path):
    v = validated("attendance-fullwidth-digits.csv")
    roster, att = v.accepted["roster"], v.accepted["attendance"]
    assert roster["person_id"].tolist()[:8] == [f"{i:04d}" for i in range(1, 9)]
    assert sorted(set(att["person_id"])) == [f"{i:04d}" for i in range(1, 41)]  # ０００７ → 0007
    assert att["person_id"].map(type).eq(str).all()

    v = validated("attendance-ids-as-numbers.xlsx")
    assert "0007" in set(v.accepted["attendance"]["person_id"])  # a text cell keeps its zeros
    (raw,) = v.quarantine.loc[v.quarantine.source == "attendance", "raw"]
    assert json.loads(raw)["person_id"] == "7"  # a number cell has lost them: nobody's id

    # and the bonus table finance receives still says 0007
    rows = _bonus_rows(v.accepted["roster"], ["0007"])
    (first,) = read_csv(write_csv(tmp_path / "b.csv", header(10_000 * len(rows)), rows))[1:-1]
    assert first[CSV_COLUMNS.index("人员编号")] == "0007"
    cell = table(write_xlsx(tmp_path / "b.xlsx", header(10_000 * len(rows)), rows))[2][0][1]
    assert (cell.value, cell.data_type) == ("0007", "s")


def test_dates_in_every_form_read_as_the_day_they_name():
    for file in ("attendance-dates-every-form.csv", "attendance-dates-cells-serials-text.xlsx"):
        att = validated(file).accepted["attendance"]
        by_line = dict(zip(att["source_line"], att["date"], strict=True))
        assert {by_line[line] for line in range(2, 42)} == {"2026-03-02"}, file
        assert {by_line[line] for line in range(42, 82)} == {"2026-03-03"}, file


def test_full_width_and_padded_values_read_as_the_clean_file_does():
    clean = validated("attendance-bom-crlf.csv").accepted["attendance"]
    for file in ("attendance-fullwidth-digits.csv", "attendance-stray-spaces.csv"):
        got = validated(file).accepted["attendance"]
        cols = ["person_id", "date", "status", "duty_filed", "duty_reviewed", "source_line"]
        pd.testing.assert_frame_equal(got[cols], clean[cols])


def test_workbooks_read_as_excel_shows_them():
    att = validated("attendance-hidden-first-sheet.xlsx").accepted["attendance"]
    assert att["date"].str.startswith("2026-03-").all()  # the visible sheet, not February's

    roster = validated("roster-merged-unit-cells.xlsx").accepted["roster"]
    assert roster["unit_name"].eq("某县人民法院").all()  # the merged cell's value on every row

    roster = validated("roster-formulas-computed.xlsx").accepted["roster"].set_index("person_id")
    assert roster.loc["0001", "post_coefficient"] == 1.2  # =1+0.2, as Excel computed it
    assert roster.loc["0002", "name"] == "李建国"  # =CONCAT("李","建国")
    assert roster.loc["0003", "post_coefficient"] == 1.0


def test_names_beyond_gbk_survive_a_gb18030_file():
    roster = validated("roster-gb18030-four-byte-names.csv").accepted["roster"]
    assert roster["name"].tolist()[-3:] == ["王䶮", "李𠀾", "欧阳䶮䶮"]


def test_what_is_set_aside_keeps_every_cell_as_delivered():
    v = validated("adjustments-100000-character-note.csv")
    (raw,) = v.quarantine["raw"]
    assert len(json.loads(raw)["note"]) == 100_000  # quoted briefly in the reason, kept whole
    v = validated("roster-unquoted-comma-in-name.csv")
    (reason,) = v.quarantine["reason"]
    assert "beyond it: 'p0041@court.example.cn'" in reason  # the cell that fell off the header


def test_csv_injection_is_text_in_and_inert_in_the_bonus_tables(tmp_path):
    for file in ("roster-csv-injection-names.csv", "roster-injection-cells.xlsx"):
        roster = validated(file).accepted["roster"]
        assert roster["name"].tolist()[-5:] == INJECTION, file  # kept exactly, as text
    adj = validated("adjustments-csv-injection.csv").accepted["adjustments"]
    assert adj["note"].tolist()[:5] == INJECTION

    ids = [f"{i:04d}" for i in range(41, 46)]
    rows = _bonus_rows(validated("roster-csv-injection-names.csv").accepted["roster"], ids)
    pool = header(10_000 * len(rows))
    body = read_csv(write_csv(tmp_path / "bonus.csv", pool, rows))[1:-1]
    names = [r[CSV_COLUMNS.index("姓名")] for r in body]
    assert sorted(names) == sorted("'" + p for p in INJECTION)  # a leading quote: no formula
    assert {r[CSV_COLUMNS.index("金额（元）")] for r in body} == {"100.00"}  # numbers untouched

    ws, _, data, _ = table(write_xlsx(tmp_path / "bonus.xlsx", pool, rows))
    cells = [row[COLUMNS.index("姓名")] for row in data]
    assert sorted(c.value for c in cells) == sorted(INJECTION)  # shown as typed
    assert all(c.data_type == "s" and c.quotePrefix for c in cells)  # text, even when edited
    amounts = [row[COLUMNS.index("金额（元）")] for row in data]
    assert all(a.data_type == "n" and a.value == 100.0 for a in amounts)
    assert not [c for row in ws.iter_rows() for c in row if c.data_type == "f"]


# --- bonus tables from an accepted roster -------------------------------------------------------
def _bonus_rows(roster: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """¥100.00 for each of `ids`, no grade, weight 1."""
    return bonus_rows(allocation([(i, None, 1.0, 10_000) for i in ids]), roster, {})
