"""The county court seed (xx县法院 “精细化” system) run for a year from its scheme file alone: a
generated court plus four people written by hand, case by case, whose year results are computed
here by hand with the numbers of scoring/schemes/court.yaml."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from etl.generate import generate
from reports.publish import publish
from reports.render import yuan
from scoring.scheme import load_scheme
from tests.handmade import (
    YEAR,
    Hand,
    assert_bonus_pools,
    assert_bonus_workbook,
    assert_three_grades,
    first_unit,
    half_up,
    run_year,
    sqlite_warehouse,  # noqa: F401 (the warehouse: SQLite only)
    workdays,
)
from tests.helpers import table

PEOPLE, SEED = 40, 7


def hands_unit(inbox: Path) -> str:
    """The unit write_hands puts the handmade people in (the first roster row of every month), read
    from the same generation run_year makes: the hand department `<unit>-hand` must be named in
    the handmade case rows before the year is run."""
    generate(inbox, PEOPLE, "2026-01", 12, seed=SEED, scheme=load_scheme("court"))
    units = {first_unit(inbox / month)[0] for month in YEAR}
    assert len(units) == 1, units
    return units.pop()


def case(dept: str, case_id: str, judge: str, filed: str, **values: object) -> dict:
    row = {"case_id": case_id, "dept_id": dept, "judge_id": judge, "filed_on": filed}
    return row | {"procedure": "ordinary", "verdict_in_court": 0, "fault": 0} | values


def top_cases(dept: str, month: str) -> list[dict]:
    """20 summary cases, filed on the 1st and closed on the 11th (10 days): 10 judgments, every
    one pronounced in court, and 10 mediations; no appeal."""
    return [
        case(
            dept,
            f"C001-{month}-{i:02d}",
            "C001",
            f"{month}-01",
            closed_on=f"{month}-11",
            procedure="summary",
            outcome="judgment" if i <= 10 else "mediation",
            verdict_in_court=1 if i <= 10 else 0,
        )
        for i in range(1, 21)
    ]


def vetoed_cases(dept: str, month: str) -> list[dict]:
    """12 simple cases, filed on the 1st and closed on the 16th (15 days): 6 judgments (3 in court)
    and 6 mediations. January's judgments 1–3 are reversed on appeal on 20 February; the first
    was heard by a panel with C003 and is found at fault (连带考核)."""
    rows = [
        case(
            dept,
            f"C002-{month}-{i:02d}",
            "C002",
            f"{month}-01",
            closed_on=f"{month}-16",
            procedure="simple",
            outcome="judgment" if i <= 6 else "mediation",
            verdict_in_court=1 if i <= 3 else 0,
            panel_ids="C002;C003" if i == 1 else "",
        )
        for i in range(1, 13)
    ]
    if month == "2026-02":
        for row in vetoed_cases(dept, "2026-01")[:3]:
            decided = {"appeal_outcome": "reversed", "appeal_decided_on": "2026-02-20"}
            rows.append(row | decided | {"fault": 1 if row["panel_ids"] else 0})
    return rows


# ORDINARY's ten cases a month: (procedure, outcome, pronounced in court)
TEN = [("simple", "judgment", 1)] * 2
TEN += [("simple", "mediation", 0)] * 2 + [("simple", "withdrawal", 0)]
TEN += [("ordinary", "mediation", 0)] + [("ordinary", "judgment", 0)] * 4


def ordinary_cases(dept: str, month: str) -> list[dict]:
    """Ten cases filed on the 1st, closed on the 21st (20 days) — except May's four ordinary
    judgments, still pending at the end of May and closed on 10 June (40 days). January's case 7
    is remanded on 20 March, June's case 8 reversed on 20 August. An old case filed 2025-12-01 is
    pending all year: more than 270 days from August on."""

    def one(m: str, i: int, closed: str | None = None, **more: object) -> dict:
        procedure, outcome, in_court = TEN[i - 1]
        done = {"closed_on": closed or f"{m}-21", "outcome": outcome, "verdict_in_court": in_court}
        return case(dept, f"C003-{m}-{i:02d}", "C003", f"{m}-01", procedure=procedure) | done | more

    rows = [one(month, i) for i in range(1, 11)]
    if month == "2026-05":
        for row in rows[6:]:
            row.update(closed_on="", outcome="", verdict_in_court=0)
    if month == "2026-06":
        rows += [one("2026-05", i, "2026-06-10") for i in range(7, 11)]
    if month == "2026-03":
        rows.append(one("2026-01", 7, appeal_outcome="remanded", appeal_decided_on="2026-03-20"))
    if month == "2026-08":
        rows.append(one("2026-06", 8, appeal_outcome="reversed", appeal_decided_on="2026-08-20"))
    rows.append(case(dept, "C003-2025-12-01", "C003", "2025-12-01"))
    return rows


def court_hands(unit: str) -> list[Hand]:
    dept = f"{unit}-hand"
    top = Hand("C001", "手工甲", "judge", cases={m: top_cases(dept, m) for m in YEAR})
    vetoed = Hand(
        "C002",
        "手工乙",
        "judge",
        adjustments=[("2026-07", "discipline", None, 1)],
        cases={m: vetoed_cases(dept, m) for m in YEAR},
    )
    ordinary = Hand(
        "C003",
        "手工丙",
        "judge",
        late={"2026-01": 2},
        absent={"2026-04": 1},
        unfiled={"2026-10": [1, 2]},  # Thursday and Friday
        adjustments=[
            ("2026-09", "mediation_nonconforming", None, 2),
            ("2026-10", "meeting_absence", None, 1),
            ("2026-11", "source_governance", None, 1),
        ],
        cases={m: ordinary_cases(dept, m) for m in YEAR},
    )
    new_hire = Hand("C004", "手工丁", "assistant", months=["2026-11", "2026-12"])
    return [top, vetoed, ordinary, new_hire]


# --- the scheme's numbers (court.yaml), applied by hand ------------------------------------------


def clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def casework(
    closed: int,
    filed: int,
    days: float,
    simple: float,
    in_court: float,
    mediation: float,
    balance: float,
    acceptance: float,
    long_pending: int = 0,
    remand: int = 0,
    reversal: int = 0,
    panel_fault: int = 0,
) -> float:
    """A judge's casework score (员额法官 targets) from the month's measures."""
    return (
        clamp(25 + 1.0 * (closed - 8), 0, 40)
        + clamp(10 + 10 * (closed / filed - 1.0), 0, 15)
        + clamp(15 - 0.2 * (days - 60), 0, 20)
        + clamp(5 + 20 * (simple - 0.60), 0, 8)
        + clamp(10 + 20 * (in_court - 0.30), 0, 15)
        + clamp(5 + 20 * (mediation - 0.40), 0, 10)
        + clamp(10 + 10 * (balance - 1.0), 0, 10)
        + max(-1.0 * long_pending, -10)
        - 2.0 * remand
        - 3.0 * reversal
        + (0 if acceptance < 0.90 else clamp(15 + 50 * (acceptance - 0.90), 0, 20))
        - 1.0 * panel_fault
    )


def team(dept_clearance: float) -> float:
    return clamp(80 + 40 * (dept_clearance - 1.0), 0, 100)


def diligence(attendance: float = 1.0, filing: float = 1.0, absent: int = 0, late: int = 0):
    return (
        clamp(60 + 100 * (attendance - 1), 0, 60)
        + clamp(40 + 50 * (filing - 1), 0, 40)
        - (5.0 * absent + 0.5 * late)
    )


def judge_total(casework: float, team: float, diligence: float, adjustments: float = 0.0):
    return clamp(0.7 * casework + 0.1 * team + 0.2 * diligence + adjustments, 0, 130)


# the hand department's cases: 20 + 12 + 10 filed and closed a month, but in May 4 of C003's stay
# open (38 closed of 42 filed) and close in June (46 closed of 42 filed)
DEPT_CLEARANCE = {m: 1.0 for m in YEAR} | {"2026-05": 38 / 42, "2026-06": 46 / 42}


def round2(x: float) -> Decimal:
    return Decimal(repr(float(x))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture
def court_year(kaohe):
    hands = court_hands(hands_unit(Path(kaohe.inbox)))
    scheme, months, closes = run_year(Path(kaohe.inbox), "court", PEOPLE, seed=SEED, hands=hands)
    return kaohe, scheme, months, closes


def test_court_year_from_the_scheme_file(court_year):
    kaohe, scheme, months, closes = court_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    period = table(url, "mart_period_score")
    year = period[period["period"] == "2026"].set_index("person_id")

    # the measures behind the figures below, as the notices show them
    indicators = table(url, "mart_indicator_score")
    indicators = indicators.set_index(["month", "person_id", "indicator_id"])

    def actual(month: str, person: str, indicator: str) -> float:
        return indicators.loc[(month, person, indicator), "actual"]

    # the team indicator is the hand department's clearance, shared by its assistant too
    assert actual("2026-05", "C001", "dept_clearance") == pytest.approx(38 / 42)
    assert actual("2026-06", "C003", "dept_clearance") == pytest.approx(46 / 42)
    assert actual("2026-12", "C004", "dept_clearance") == pytest.approx(1.0)
    assert actual("2026-02", "C002", "acceptance") == pytest.approx(0.875)
    assert indicators.loc[("2026-02", "C002", "acceptance"), "score"] == 0  # veto_points
    assert actual("2026-02", "C003", "panel_fault") == 1
    assert [actual(m, "C003", "long_pending") for m in ("2026-07", "2026-08")] == [0, 1]
    assert actual("2026-05", "C003", "balance") == pytest.approx(1 - 3.2 / 9.2)

    # TOP, every month: closed 25 + (20 − 8) = 37, clearance 10, duration 15 + 0.2 × 50 → max 20,
    # summary 5 + 20 × 0.4 → max 8, in court 10 + 20 × 0.7 → max 15, mediation 5 + 20 × 0.1 = 7,
    # balance 10, acceptance 15 + 50 × 0.1 = 20: casework 127; diligence 60 + 40 = 100
    top = casework(20, 20, 10, 1.0, 1.0, 0.5, 1.0, 1.0)
    assert top == pytest.approx(37 + 10 + 20 + 8 + 15 + 7 + 10 + 20)
    assert diligence() == 100
    for m in YEAR:  # 0.7 × 127 + 0.1 × team + 0.2 × 100 = 116.9 with the team on target
        expected = judge_total(top, team(DEPT_CLEARANCE[m]), 100)
        assert monthly.loc[(m, "C001"), "total_score"] == pytest.approx(expected), m
    assert monthly.loc[("2026-01", "C001"), "total_score"] == pytest.approx(116.9)
    # the team's May (−40 × 4/42) and June (+40 × 4/42) cancel out: the year is the plain mean
    assert year.loc["C001", "period_score"] == pytest.approx(116.9)
    assert year.loc["C001", "rank_in_scope"] == 1 and year.loc["C001", "grade"] == "excellent"
    # the quarter (not the year) takes the political evaluation (every rater gives 90) at 0.2
    q1 = period[(period["period"] == "2026-Q1")].set_index("person_id")
    assert q1.loc["C001", "period_score"] == pytest.approx(0.8 * 116.9 + 0.2 * 90)

    # VETOED: casework 29 + 10 + 20 + 8 + 14 + 7 + 10 + 20 = 118 in January; in February three
    # reversals (−9) bring the acceptance rate to 1 − 3/24 = 0.875, below the 0.90 veto line:
    # that indicator scores 0. From March the rate is 1 − 3 / (12 × months) and climbs back
    acceptance = {m: 1 - 3 / (12 * i) for i, m in enumerate(YEAR, start=1)} | {"2026-01": 1.0}
    vetoed = {}
    for m in YEAR:
        work = casework(12, 12, 15, 1.0, 0.5, 0.5, 1.0, acceptance[m], reversal=3 * (m == YEAR[1]))
        vetoed[m] = judge_total(work, team(DEPT_CLEARANCE[m]), 100)
        assert monthly.loc[(m, "C002"), "total_score"] == pytest.approx(vetoed[m]), m
    assert vetoed["2026-01"] == pytest.approx(0.7 * 118 + 8 + 20)
    assert vetoed["2026-02"] == pytest.approx(0.7 * (118 - 9 - 20) + 8 + 20)
    # the July discipline finding (一票否决) puts a 0.7 × 118-ish judge in the worst grade
    assert year.loc["C002", "period_score"] == pytest.approx(sum(vetoed.values()) / 12)
    assert bool(year.loc["C002", "veto"]) and year.loc["C002", "grade"] == "general"

    # ORDINARY, month by month: ten cases, 20 days, half simple, 2 of 6 judgments in court,
    # 4 of 10 mediated or withdrawn; closed 10 a month, except May (6) and June (14)
    closed = dict.fromkeys(YEAR, 10) | {"2026-05": 6, "2026-06": 14}
    overturned = dict.fromkeys(YEAR, 0) | {"2026-03": 1, "2026-08": 1}
    ordinary = {}
    for i, m in enumerate(YEAR, start=1):
        so_far = [closed[x] for x in YEAR[:i]]
        mean = sum(so_far) / i  # closure balance: 1 − |closed − mean of the year so far| / mean
        # acceptance: 1 − overturned / closed, both summed from January (the warehouse's months)
        accept = 1 - sum(overturned[x] for x in YEAR[:i]) / sum(so_far)
        measures = {
            "closed": closed[m],
            "filed": 10,
            "days": 20,
            "simple": 0.5,
            "in_court": 2 / 6,
            "mediation": 0.4,
            "balance": 1 - abs(closed[m] - mean) / mean,
            "acceptance": accept,
            "long_pending": int(i >= 8),  # 2025-12-01 to 2026-08-31 is 273 days > 270
            "remand": int(m == "2026-03"),
            "reversal": int(m == "2026-08"),
            "panel_fault": int(m == "2026-02"),  # C002's faulted panel
        }
        if m == "2026-05":  # six closed: five simple, both judgments in court, four mediated
            measures |= {"simple": 5 / 6, "in_court": 2 / 2, "mediation": 4 / 6}
        if m == "2026-06":  # fourteen closed: May's four after 40 days, ten judgments
            days = (10 * 20 + 4 * 40) / 14
            measures |= {"days": days, "simple": 5 / 14, "in_court": 2 / 10, "mediation": 4 / 14}
        ordinary[m] = judge_total(casework(**measures), team(DEPT_CLEARANCE[m]), 100)
    april = len(workdays("2026-04"))  # 22: one absent
    october = len(workdays("2026-10"))  # 22: two unfiled
    ordinary["2026-01"] += 0.2 * (diligence(late=2) - 100)
    ordinary["2026-04"] += 0.2 * (diligence(attendance=(april - 1) / april, absent=1) - 100)
    ordinary["2026-09"] -= 0.5 * 2  # two nonconforming mediation referrals
    ordinary["2026-10"] += 0.2 * (diligence(filing=(october - 2) / october) - 100) - 0.5
    ordinary["2026-11"] += 0.5  # source governance
    for m in YEAR:
        assert monthly.loc[(m, "C003"), "total_score"] == pytest.approx(ordinary[m]), m
    # spelled out for May: closed 25 − 2, clearance 10 − 4, duration 20, simple 5 + 20 × (5/6 − 0.6)
    # → max 8, in court 15, mediation 5 + 20 × (4/6 − 0.4) → max 10, balance 10 − 10 × 3.2/9.2
    # (mean (4 × 10 + 6) / 5 = 9.2), acceptance 15 + 50 × (1 − 1/46 − 0.9); team 80 − 40 × 4/42
    may = 23 + 6 + 20 + 8 + 15 + 10 + (10 - 10 * 3.2 / 9.2) + (15 + 50 * (1 - 1 / 46 - 0.9))
    assert ordinary["2026-05"] == pytest.approx(0.7 * may + 0.1 * (80 - 40 * 4 / 42) + 20)
    assert year.loc["C003", "period_score"] == pytest.approx(sum(ordinary.values()) / 12)
    assert not bool(year.loc["C003", "veto"])

    # NEW_HIRE: an assistant of two months (team 80 × 0.5 + diligence 100 × 0.5 = 90), below
    # min_months 6: not graded, no bonus
    assert monthly.loc[("2026-12", "C004"), "total_score"] == pytest.approx(90.0)
    assert year.loc["C004", "months"] == 2 and not bool(year.loc["C004", "graded"])
    assert pd.isna(year.loc["C004", "grade"])

    # grades: 15% excellent, 5% general (the vetoed beyond it), good the rest, per category
    graded = assert_three_grades(year, "excellent", "good", "general")
    assert set(graded["category"]) == {"judge", "fast_track", "assistant", "leader"}
    judges = graded[graded["category"] == "judge"]
    assert half_up(len(judges), "0.15") >= 1 and half_up(len(judges), "0.05") == 0
    assert not period["pacesetter"].astype(bool).any()  # the court names no pacesetters

    # bonus: ¥8,000 a graded head of the unit, split by the score as printed (2 decimals);
    # the vetoed get 0 × their score
    bonus = table(url, "mart_bonus_allocation")
    bonus = bonus[bonus["period"] == "2026"]
    assert_bonus_pools(bonus, year.reset_index(), 8000)
    mine = bonus.set_index("person_id")
    assert mine.loc["C002", "amount_cents"] == 0 and "C004" not in mine.index
    unit = graded[graded["unit_id"] == year.loc["C001", "unit_id"]]
    scores = unit[["period_score", "veto"]].itertuples()
    weights = {p: Decimal(0) if bool(v) else round2(s) for p, s, v in scores}
    pool = 8000 * 100 * len(unit)
    for who in ("C001", "C003"):
        share = Fraction(pool) * Fraction(weights[who]) / Fraction(sum(weights.values()))
        assert abs(mine.loc[who, "amount_cents"] - share) <= 1, who
    assert weights["C001"] == Decimal("116.90")

    # the year is published: notices first, then bulletins and bonus tables
    publish("2026", "notify", "p-notify", "court", kaohe, today=dt.date(2027, 1, 8))
    final = publish("2026", "final", "p-final", "court", kaohe, today=dt.date(2027, 1, 15))
    assert final["sent"] > 0
    folder = kaohe.output / scheme.id / "2026"
    notice = (folder / "notice-C001.html").read_text(encoding="utf-8")
    assert "手工甲" in notice and "116.90" in notice and "优秀" in notice
    assert yuan(mine.loc["C001", "amount_cents"]) in notice
    assert "手工丙" not in notice
    unit_id = year.loc["C001", "unit_id"]
    assert_bonus_workbook(folder / f"bonus-{unit_id}.xlsx", bonus[bonus["unit_id"] == unit_id])
