"""The built-in measures: every number below is worked out by hand in the comment beside it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.measures import (
    ATTENDANCE_MEASURES,
    CASE_MEASURES,
    DEPARTMENT_MEASURES,
    MEASURES,
    attendance_measures,
    case_measures,
    department_measures,
)

NAN = float("nan")
ATTENDANCE_COLUMNS = ["person_id", "date", "status", "duty_filed", "duty_reviewed"]
STATUSES = ["present", "late", "early_leave", "absent", "leave", "business_trip", "holiday"]


def _presence(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["month", "person_id"])


def _attendance(rows: list[tuple]) -> pd.DataFrame:
    """rows: (person_id, date, status, duty_filed, duty_reviewed); the month is the date's."""
    frame = pd.DataFrame(rows, columns=ATTENDANCE_COLUMNS)
    frame.insert(0, "month", frame["date"].str[:7])
    for flag in ("duty_filed", "duty_reviewed"):
        frame[flag] = frame[flag].astype("Int64")
    return frame


def _case(month: str, case_id: str, judge: str = "J", **values: object) -> dict:
    """One snapshot row; anything not given is empty, as for a freshly filed case."""
    row = {
        "month": month,
        "case_id": case_id,
        "dept_id": "D1",
        "judge_id": judge,
        "panel_ids": None,
        "filed_on": None,
        "closed_on": None,
        "procedure": "ordinary",
        "outcome": None,
        "verdict_in_court": None,
        "appeal_outcome": None,
        "appeal_decided_on": None,
        "fault": None,
    }
    row.update(values)
    return row


def _snapshots(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(_case("2024-01", "x")))
    for flag in ("verdict_in_court", "fault"):
        frame[flag] = frame[flag].astype("Int64")
    return frame


def _closed(month: str, judge: str, n: int, prefix: str = "") -> list[dict]:
    """n cases of `judge` filed and closed on the 1st and 2nd of `month`."""
    return [
        _case(
            month,
            f"{prefix}{judge}-{month}-{i}",
            judge,
            filed_on=f"{month}-01",
            closed_on=f"{month}-02",
            outcome="judgment",
        )
        for i in range(n)
    ]


def _row(result: pd.DataFrame, month: str, person: str) -> pd.Series:
    hit = result[(result["month"] == month) & (result["person_id"] == person)]
    assert len(hit) == 1
    return hit.iloc[0]


def _same(actual: dict, expected: dict) -> None:
    for name, want in expected.items():
        got = actual[name]
        if math.isnan(want):
            assert math.isnan(got), f"{name}: {got} should have no basis"
        else:
            assert got == pytest.approx(want), name


# --- attendance ----------------------------------------------------------------------------------


def test_every_attendance_measure_on_a_small_month():
    rows = [
        ("A", "2024-03-01", "present", 1, 1),
        ("A", "2024-03-02", "holiday", None, None),
        ("A", "2024-03-03", "late", 1, 0),
        ("A", "2024-03-04", "early_leave", 0, None),
        ("A", "2024-03-05", "absent", 0, None),
        ("A", "2024-03-06", "leave", None, None),
        ("A", "2024-03-07", "business_trip", 1, 1),
        ("A", "2024-03-08", "present", 1, None),
    ]
    result = attendance_measures(_attendance(rows), _presence(("2024-03", "B"), ("2024-03", "A")))

    assert list(result.columns) == ["month", "person_id", *ATTENDANCE_MEASURES]
    # output follows presence, B first; B has no rows
    assert list(result["person_id"]) == ["B", "A"]
    _same(
        _row(result, "2024-03", "A"),
        {
            "attendance.workdays": 7,  # 8 rows − 1 holiday
            # expected = 8 − holiday − leave = 6; attended = 2 present + late + early + trip = 5
            "attendance.attendance_rate": 5 / 6,
            "attendance.late_count": 1,
            "attendance.early_leave_count": 1,
            "attendance.absent_days": 1,
            "attendance.leave_days": 1,
            # required: 01 03 04 05 07 08 = 6 days, filed on 01 03 07 08 = 4
            "attendance.duty_filing_rate": 4 / 6,
            # of the 4 filed, reviewed on 01 and 07
            "attendance.duty_review_rate": 2 / 4,
            "attendance.missed_filing_streaks": 1,  # 04, 05
        },
    )
    _same(
        _row(result, "2024-03", "B"),
        {name: 0.0 for name in ATTENDANCE_MEASURES if not name.endswith("_rate")}
        | {name: NAN for name in ATTENDANCE_MEASURES if name.endswith("_rate")},
    )


def test_attendance_rates_without_a_denominator_have_no_basis():
    rows = [
        ("A", "2024-03-01", "holiday", None, None),
        ("A", "2024-03-02", "holiday", None, None),
        ("A", "2024-03-03", "leave", 0, None),
        ("A", "2024-03-04", "leave", 0, None),
    ]
    result = attendance_measures(_attendance(rows), _presence(("2024-03", "A")))
    _same(
        _row(result, "2024-03", "A"),
        {
            "attendance.workdays": 2,  # the two leave days are workdays
            "attendance.attendance_rate": NAN,  # expected = 4 − 2 holiday − 2 leave = 0
            "attendance.duty_filing_rate": 0.0,  # 0 filed / 2 required
            "attendance.duty_review_rate": NAN,  # nothing filed to review
            "attendance.missed_filing_streaks": 1,  # 03, 04
        },
    )


@pytest.mark.parametrize(
    ("filed", "streaks"),
    [
        ([0], 0),  # a run of 1 is no streak
        ([1, 0, 1], 0),
        ([0, 0], 1),
        ([0, 0, 0], 1),  # one run of 3 is one streak
        ([0, None, 0], 1),  # the non-required day is skipped: one run of 2
        ([0, None, None, 0, 0], 1),  # one run of 3 across two skipped days
        ([0, 0, 1, 0, 0], 2),  # two separate runs
        ([0, 1, 0, 1, 0], 0),
        ([0, 0, 0, 1, 0, None, 0, 1, 0], 2),  # runs of 3 and of 2 (skip), last 0 alone
    ],
)
def test_missed_filing_streaks(filed: list, streaks: int):
    rows = [("A", f"2024-03-{day:02d}", "present", f, None) for day, f in enumerate(filed, 1)]
    rows.reverse()  # rows arrive in any order; the run follows the dates
    result = attendance_measures(_attendance(rows), _presence(("2024-03", "A")))
    assert result["attendance.missed_filing_streaks"].iloc[0] == streaks


def test_streaks_are_cut_at_the_month_and_between_people():
    rows = [
        ("A", "2024-03-30", "present", 1, None),
        ("A", "2024-03-31", "present", 0, None),
        ("A", "2024-04-01", "present", 0, None),  # 31 Mar + 1 Apr are in different months
        ("A", "2024-04-02", "present", 1, None),
        ("B", "2024-03-01", "present", 0, None),  # directly after A's row of 31 Mar
        ("B", "2024-03-02", "present", 1, None),
    ]
    att = _attendance(rows).sort_values(["month", "person_id", "date"])
    result = attendance_measures(
        att, _presence(("2024-03", "A"), ("2024-04", "A"), ("2024-03", "B"))
    )
    assert result["attendance.missed_filing_streaks"].tolist() == [0, 0, 0]


def test_attendance_ids_compare_as_text_whatever_the_dtype():
    rows = [
        (1001, "2024-03-01", "present", 0.0, NAN),
        (1001, "2024-03-02", "absent", 0.0, NAN),
        (1001, "2024-03-03", "present", 1.0, 1.0),
    ]
    plain = pd.DataFrame(rows, columns=ATTENDANCE_COLUMNS)
    plain.insert(0, "month", "2024-03")  # object ids (ints), float flags with NaN
    typed = _attendance([("1001", *r[1:]) for r in rows]).astype(
        {"person_id": "string", "date": "string", "status": "string"}
    )
    presence = _presence(("2024-03", "1001"))
    first = attendance_measures(plain.astype({"person_id": object}), presence)
    second = attendance_measures(typed, presence.astype("string"))
    pd.testing.assert_frame_equal(first, second)
    # attended 2 of 3 expected; 1 of 3 filed; the one filed was reviewed; 01 and 02 missed
    assert first.iloc[0, 2:].tolist() == [3, 2 / 3, 0, 0, 1, 0, 1 / 3, 1, 1]


def _reference_streaks(filed: list) -> int:
    """The rule read literally: count runs of ≥ 2 misses over the required days."""
    required = [f for f in filed if f is not None]
    runs, length = 0, 0
    for f in [*required, 1]:
        if f == 0:
            length += 1
        else:
            runs += length >= 2
            length = 0
    return runs


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(
        st.tuples(
            st.sampled_from(STATUSES),
            st.sampled_from([0, 1, None]),
            st.sampled_from([0, 1, None]),
        ),
        max_size=31,
    ),
    seed=st.integers(0, 2**16),
)
def test_attendance_property_rates_are_shares_and_streaks_follow_the_rule(days: list, seed: int):
    rows = [
        ("A", f"2024-03-{day:02d}", status, filed, reviewed)
        for day, (status, filed, reviewed) in enumerate(days, 1)
    ]
    att = _attendance(rows) if rows else _attendance([("A", "2024-03-01", "holiday", None, None)])
    att = att.sample(frac=1, random_state=seed)  # any row order
    result = attendance_measures(att, _presence(("2024-03", "A"))).iloc[0]
    for name in ATTENDANCE_MEASURES:
        value = result[name]
        if name.endswith("_rate"):
            assert math.isnan(value) or 0.0 <= value <= 1.0
        else:
            assert value >= 0
    if rows:
        assert result["attendance.missed_filing_streaks"] == _reference_streaks(
            [filed for _, filed, _ in days]
        )


# --- cases ---------------------------------------------------------------------------------------


def test_every_case_measure_on_a_small_month():
    m = "2024-03"
    rows = [
        # closed in March: 10 days, simple, judgment given in court
        _case(
            m,
            "c1",
            filed_on="2024-03-01",
            closed_on="2024-03-11",
            procedure="simple",
            outcome="judgment",
            verdict_in_court=1,
        ),
        # 10 Feb → 31 Mar = 19 (Feb 2024) + 31 = 50 days, judgment not in court
        _case(
            m,
            "c2",
            filed_on="2024-02-10",
            closed_on="2024-03-31",
            outcome="judgment",
            verdict_in_court=0,
        ),
        # 31 Jan → 1 Mar = 29 (to 29 Feb) + 1 = 30 days, summary, mediation
        _case(
            m,
            "c3",
            filed_on="2024-01-31",
            closed_on="2024-03-01",
            procedure="summary",
            outcome="mediation",
        ),
        # 5 → 25 Mar = 20 days, withdrawal; P sits on the panel but no fault
        _case(
            m,
            "c9",
            filed_on="2024-03-05",
            closed_on="2024-03-25",
            outcome="withdrawal",
            panel_ids="J;P",
        ),
        # pending: 16 days old, and 455 days old (1 Jan 2023 → 31 Mar 2024 = 365 + 90)
        _case(m, "c4", filed_on="2024-03-15"),
        _case(m, "c5", filed_on="2023-01-01"),
        # closed last year, appeals decided in March: reversed with fault, remanded, upheld
        _case(
            m,
            "c6",
            filed_on="2023-06-01",
            closed_on="2023-12-01",
            outcome="judgment",
            appeal_outcome="reversed",
            appeal_decided_on="2024-03-15",
            fault=1,
            panel_ids="J;P",
        ),
        _case(
            m,
            "c7",
            filed_on="2023-05-01",
            closed_on="2023-11-20",
            outcome="judgment",
            appeal_outcome="remanded",
            appeal_decided_on="2024-03-02",
            fault=0,
        ),
        _case(
            m,
            "c8",
            filed_on="2023-05-01",
            closed_on="2023-10-01",
            outcome="judgment",
            appeal_outcome="upheld",
            appeal_decided_on="2024-03-05",
            fault=1,
        ),
        # February's extract is another month: nothing in it counts for March here
        _case("2024-02", "c2", filed_on="2024-02-10"),
    ]
    result = case_measures(_snapshots(rows), _presence((m, "Q"), (m, "J"), (m, "P")))

    assert list(result.columns) == ["month", "person_id", *CASE_MEASURES]
    assert list(result["person_id"]) == ["Q", "J", "P"]
    _same(
        _row(result, m, "J"),
        {
            "cases.closed_count": 4,  # c1 c2 c3 c9
            "cases.filed_count": 3,  # c1 c9 c4
            "cases.clearance_rate": 4 / 3,
            "cases.avg_duration_days": (10 + 50 + 30 + 20) / 4,  # 27.5
            "cases.simple_procedure_rate": 2 / 4,  # c1 simple, c3 summary
            "cases.in_court_verdict_rate": 1 / 2,  # judgments c1 (in court), c2
            "cases.mediation_withdrawal_rate": 2 / 4,  # c3, c9
            "cases.pending_count": 2,  # c4 c5
            "cases.long_pending_count": 1,  # c5
            "cases.reversal_count": 1,  # c6
            "cases.remand_count": 1,  # c7
            "cases.acceptance_rate": 1 - (1 + 1) / 4,  # only March is held
            "cases.panel_fault_count": 0,  # the judge of c6 is not liable as panel member
            "cases.closure_balance": 1.0,  # present in March only: mean 4, |4 − 4| / 4 = 0
        },
    )
    _same(
        _row(result, m, "P"),
        {
            "cases.closed_count": 0,
            "cases.clearance_rate": NAN,
            "cases.avg_duration_days": NAN,
            "cases.acceptance_rate": NAN,
            "cases.panel_fault_count": 1,  # c6: fault, reversed in March, P on the panel
            "cases.closure_balance": 1.0,  # mean 0
        },
    )
    nothing = {name: 0.0 for name in CASE_MEASURES} | {
        name: NAN
        for name in CASE_MEASURES
        if name.endswith("_rate") or name == "cases.avg_duration_days"
    }
    _same(_row(result, m, "Q"), nothing | {"cases.closure_balance": 1.0})


def test_case_rates_without_a_denominator_have_no_basis():
    m = "2024-03"
    rows = [
        # K: one mediation closed, none filed; 5 Jan → 10 Mar = 26 + 29 + 10 = 65 days
        _case(m, "k1", "K", filed_on="2024-01-05", closed_on="2024-03-10", outcome="mediation"),
        # L: one filed, none closed
        _case(m, "l1", "L", filed_on="2024-03-03"),
    ]
    result = case_measures(_snapshots(rows), _presence((m, "K"), (m, "L")))
    _same(
        _row(result, m, "K"),
        {
            "cases.clearance_rate": NAN,  # filed 0
            "cases.avg_duration_days": 65,
            "cases.in_court_verdict_rate": NAN,  # no judgments
            "cases.mediation_withdrawal_rate": 1.0,
            "cases.acceptance_rate": 1.0,  # 1 − 0 / 1
        },
    )
    _same(
        _row(result, m, "L"),
        {
            "cases.clearance_rate": 0.0,  # 0 closed / 1 filed
            "cases.avg_duration_days": NAN,
            "cases.simple_procedure_rate": NAN,
            "cases.in_court_verdict_rate": NAN,
            "cases.mediation_withdrawal_rate": NAN,
            "cases.pending_count": 1,
            "cases.acceptance_rate": NAN,  # nothing closed in 12 months
        },
    )


def _reversed_in_april() -> dict:
    """April's extract shows a case closed in January and reversed on 10 April."""
    return _case(
        "2024-04",
        "J-2024-01-0",
        filed_on="2024-01-01",
        closed_on="2024-01-02",
        outcome="judgment",
        appeal_outcome="reversed",
        appeal_decided_on="2024-04-10",
    )


def test_reversal_counts_in_the_month_decided_and_acceptance_looks_back():
    rows = [
        *_closed("2024-01", "J", 2),  # J-2024-01-0 is later reversed
        # April's extract: the January case, reversed on 10 April; and one April closure
        _reversed_in_april(),
        *_closed("2024-04", "J", 1),
    ]
    presence = _presence(("2024-01", "J"), ("2024-04", "J"))
    result = case_measures(_snapshots(rows), presence)
    jan, apr = _row(result, "2024-01", "J"), _row(result, "2024-04", "J")
    assert jan["cases.reversal_count"] == 0 and jan["cases.acceptance_rate"] == 1.0  # 1 − 0/2
    assert apr["cases.closed_count"] == 1  # closed in January is not closed in April
    assert apr["cases.reversal_count"] == 1
    # 12 months to April: closed 2 (Jan) + 1 (Apr), reversed 1 → 1 − 1/3
    assert apr["cases.acceptance_rate"] == pytest.approx(2 / 3)
    # present Jan (2) and Apr (1): mean 1.5 → 1 − 0.5/1.5
    assert apr["cases.closure_balance"] == pytest.approx(2 / 3)


def test_acceptance_window_is_twelve_months_and_crosses_the_year():
    remand = _case(
        "2023-04",
        "r1",
        filed_on="2023-01-01",
        closed_on="2023-02-01",
        outcome="judgment",
        appeal_outcome="remanded",
        appeal_decided_on="2023-04-20",
    )
    rows = [
        *_closed("2023-03", "J", 4),
        *_closed("2023-04", "J", 1),
        remand,
        *_closed("2024-03", "J", 1),
    ]
    presence = _presence(("2024-02", "J"), ("2024-03", "J"))
    result = case_measures(_snapshots(rows), presence)
    # Feb 2024 looks at Mar 2023 … Feb 2024: closed 4 + 1 = 5, remanded 1 → 1 − 1/5
    assert _row(result, "2024-02", "J")["cases.acceptance_rate"] == pytest.approx(0.8)
    # Mar 2024 drops Mar 2023: closed 1 + 1 = 2, remanded 1 → 1 − 1/2
    assert _row(result, "2024-03", "J")["cases.acceptance_rate"] == pytest.approx(0.5)
    # a snapshot 12+ months back is not reported on, only read
    assert set(result["month"]) == {"2024-02", "2024-03"}


def test_closure_balance_averages_only_the_months_present_this_year():
    rows = [
        *_closed("2023-12", "J", 10),  # last year: never in the mean
        *_closed("2024-01", "J", 10),  # closed elsewhere before joining: not present
        *_closed("2024-02", "J", 10),
        *_closed("2024-04", "J", 2),
        *_closed("2024-05", "J", 4),
        *_closed("2024-06", "J", 9),
        *_closed("2024-03", "R", 5),
    ]
    presence = _presence(
        ("2023-12", "J"),
        ("2024-04", "J"),
        ("2024-05", "J"),
        ("2024-06", "J"),
        ("2024-01", "R"),
        ("2024-02", "R"),
        ("2024-03", "R"),
        ("2024-01", "S"),
        ("2024-02", "S"),
    )
    result = case_measures(_snapshots(rows), presence)
    balance = result.set_index(["month", "person_id"])["cases.closure_balance"]
    assert balance[("2023-12", "J")] == 1.0  # mean 10, closed 10
    assert balance[("2024-04", "J")] == 1.0  # mean of April alone is 2
    assert balance[("2024-05", "J")] == pytest.approx(2 / 3)  # mean 3: 1 − 1/3
    assert balance[("2024-06", "J")] == pytest.approx(0.2)  # mean 15/3 = 5: 1 − 4/5
    # R: 0, 0, 5 → mean 5/3, 1 − (10/3)/(5/3) = −1, clamped to 0
    assert balance[("2024-01", "R")] == 1.0  # mean 0
    assert balance[("2024-03", "R")] == 0.0
    assert balance[("2024-01", "S")] == 1.0 and balance[("2024-02", "S")] == 1.0  # mean 0


def test_panel_fault_falls_on_the_panel_members_not_the_judge():
    m = "2024-03"
    overturned = {"filed_on": "2023-01-01", "closed_on": "2023-06-01", "outcome": "judgment"}
    rows = [
        _case(
            m,
            "f1",
            panel_ids="J; P1;P2;P1",
            fault=1,
            appeal_outcome="reversed",
            appeal_decided_on="2024-03-10",
            **overturned,
        ),
        _case(
            m,
            "f2",
            panel_ids="P1;J",
            fault=1,
            appeal_outcome="remanded",
            appeal_decided_on="2024-03-31",
            **overturned,
        ),
        # not counted: upheld; decided in February; no fault; fault unknown
        _case(
            m,
            "n1",
            panel_ids="P1",
            fault=1,
            appeal_outcome="upheld",
            appeal_decided_on="2024-03-10",
            **overturned,
        ),
        _case(
            m,
            "n2",
            panel_ids="P1",
            fault=1,
            appeal_outcome="reversed",
            appeal_decided_on="2024-02-28",
            **overturned,
        ),
        _case(
            m,
            "n3",
            panel_ids="P1",
            fault=0,
            appeal_outcome="reversed",
            appeal_decided_on="2024-03-10",
            **overturned,
        ),
        _case(
            m,
            "n4",
            panel_ids="P1",
            fault=None,
            appeal_outcome="reversed",
            appeal_decided_on="2024-03-10",
            **overturned,
        ),
        # P2 judges this one: as judge it is a reversal, not a panel fault
        _case(
            m,
            "n5",
            "P2",
            panel_ids="P2;J",
            fault=1,
            appeal_outcome="reversed",
            appeal_decided_on="2024-03-12",
            **overturned,
        ),
    ]
    result = case_measures(_snapshots(rows), _presence((m, "J"), (m, "P1"), (m, "P2")))
    faults = result.set_index("person_id")["cases.panel_fault_count"]
    assert faults["P1"] == 2  # f1 (listed twice, counted once) and f2
    assert faults["P2"] == 1  # f1
    assert faults["J"] == 1  # n5, where J sat on P2's panel
    reversals = result.set_index("person_id")["cases.reversal_count"]
    assert reversals["J"] == 3 and reversals["P2"] == 1  # J: f1 n3 n4 (n2 is February's)


def test_long_pending_is_strictly_more_than_the_setting():
    m = "2024-03"
    rows = [
        # 1 Apr 2023 → 31 Mar 2024 = 365 days (29 Feb 2024 included): not long
        _case(m, "d365", filed_on="2023-04-01"),
        # 31 Mar 2023 → 31 Mar 2024 = 366 days: long
        _case(m, "d366", filed_on="2023-03-31"),
        # closed after the month end: still pending at it (10 Mar 2023 → 387 days)
        _case(m, "late", filed_on="2023-03-10", closed_on="2024-04-03", outcome="judgment"),
        # filed after the month end: not pending yet
        _case(m, "next", filed_on="2024-04-01"),
    ]
    presence = _presence((m, "J"))
    result = case_measures(_snapshots(rows), presence).iloc[0]
    assert result["cases.pending_count"] == 3
    assert result["cases.long_pending_count"] == 2  # d366, late
    assert result["cases.closed_count"] == 0
    # the setting comes from the scheme: with 366, only "late" (387 days) is long
    assert (
        case_measures(_snapshots(rows), presence, long_pending_days=366).iloc[0][
            "cases.long_pending_count"
        ]
        == 1
    )


def test_case_ids_compare_as_text_whatever_the_dtype():
    rows = [
        _case(
            "2024-03",
            "c1",
            1001,
            panel_ids="2002",
            filed_on="2024-03-01",
            closed_on="2024-03-04",
            outcome="judgment",
            verdict_in_court=1,
            fault=1,
            appeal_outcome="reversed",
            appeal_decided_on="2024-03-20",
        ),
    ]
    plain = pd.DataFrame(rows).astype({"verdict_in_court": float, "fault": float})
    typed = _snapshots(rows).astype({"judge_id": "string", "filed_on": "string"})
    presence = _presence(("2024-03", "1001"), ("2024-03", "2002"))
    first = case_measures(plain, presence)
    second = case_measures(typed, presence.astype("string"))
    pd.testing.assert_frame_equal(first, second)
    assert first["cases.closed_count"].tolist() == [1, 0]
    assert first["cases.avg_duration_days"].iloc[0] == 3  # 1 → 4 March
    assert first["cases.panel_fault_count"].tolist() == [0, 1]


def test_measures_names_every_output_column():
    assert MEASURES == set(ATTENDANCE_MEASURES) | set(CASE_MEASURES) | set(DEPARTMENT_MEASURES)
    assert len(MEASURES) == 9 + 14 + 1
    empty = _presence()
    att = attendance_measures(_attendance([("A", "2024-03-01", "present", 1, 1)]), empty)
    cases = case_measures(_snapshots([]), empty)
    dept = department_measures(_snapshots([]), empty.assign(dept_id=[]))
    assert att.empty and cases.empty and dept.empty
    assert set(att.columns[2:]) | set(cases.columns[2:]) | set(dept.columns[2:]) == MEASURES
    assert all(np.issubdtype(t, np.floating) for t in cases.dtypes.iloc[2:])


def test_history_counts_stand_in_for_earlier_snapshots():
    # the reversal test's months, but January given as the counts the warehouse aggregates
    april = [
        _reversed_in_april(),
        *_closed("2024-04", "J", 1),
    ]
    history = pd.DataFrame(
        {
            "month": ["2024-01", "2024-04"],  # April's counts are ignored: its snapshot is given
            "person_id": ["J", "J"],
            "closed": [2.0, 99.0],
            "reversed": [0.0, 99.0],
            "remanded": [0.0, 0.0],
        }
    )
    presence = _presence(("2024-01", "J"), ("2024-04", "J"))
    result = case_measures(_snapshots(april), presence, history=history)
    apr = _row(result, "2024-04", "J")
    assert apr["cases.closed_count"] == 1 and apr["cases.reversal_count"] == 1
    assert apr["cases.acceptance_rate"] == pytest.approx(2 / 3)  # 1 − 1/(2 + 1)
    assert apr["cases.closure_balance"] == pytest.approx(2 / 3)  # mean (2 + 1)/2 = 1.5


def test_measures_of_chosen_months_equal_those_of_every_month():
    """Scoring reports only its own months; the earlier months of presence still feed the
    closure balance and the look-back, so the reported rows are the same as in a full run."""
    rows = [
        *_closed("2024-04", "J", 2),
        *_closed("2024-05", "J", 4),
        *_closed("2024-06", "J", 9),
        *_closed("2024-06", "R", 1),
    ]
    presence = _presence(
        ("2024-04", "J"), ("2024-05", "J"), ("2024-06", "J"), ("2024-05", "R"), ("2024-06", "R")
    )
    full = case_measures(_snapshots(rows), presence)
    june = case_measures(_snapshots(rows), presence, months=["2024-06"])
    assert june["month"].tolist() == ["2024-06", "2024-06"]
    want = full[full["month"] == "2024-06"].reset_index(drop=True)
    pd.testing.assert_frame_equal(june, want)
    # J: mean 5, 1 − 4/5; R: May 0 and June 1, mean 1/2, 1 − (1/2)/(1/2) = 0
    assert june["cases.closure_balance"].tolist() == pytest.approx([0.2, 0.0])


def test_department_clearance_is_the_divisions_closed_over_filed_shared_by_every_member():
    # division D1 in March: 3 filed (one by J, two by K), 2 closed (J's own and an old case of
    # K's); division D2: 1 filed, nothing closed; D3 has no case at all
    rows = [
        _case("2024-03", "a", "J", filed_on="2024-03-02", closed_on="2024-03-20"),
        _case("2024-03", "b", "K", filed_on="2024-03-05"),
        _case("2024-03", "c", "K", filed_on="2024-03-09"),
        _case("2024-03", "d", "K", filed_on="2023-11-09", closed_on="2024-03-03"),
        _case("2024-03", "e", "K", dept_id="D2", filed_on="2024-03-09"),
        _case("2024-02", "f", "J", filed_on="2024-02-09"),  # February's extract: not March's
    ]
    people = pd.DataFrame(
        {
            "month": ["2024-03"] * 5,
            "person_id": ["J", "K", "A", "B", "C"],
            "dept_id": ["D1", "D1", "D1", "D2", "D3"],  # A: an assistant of D1, no cases of her own
        }
    )
    got = department_measures(_snapshots(rows), people)
    rate = dict(zip(got["person_id"], got["cases.dept_clearance_rate"], strict=True))
    assert rate["J"] == rate["K"] == rate["A"] == pytest.approx(2 / 3)
    assert rate["B"] == 0.0
    assert math.isnan(rate["C"])  # no case filed: no basis
