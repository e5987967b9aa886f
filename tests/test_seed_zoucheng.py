"""The Zoucheng seed (邹城市“绩效标兵”) run for a year from its scheme file alone: a generated city
office plus five people written by hand, whose results are computed here by hand, and nominations
of the hand's own beside the generated ones, so the 2% cap of a unit is seen taking one and
refusing the rest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from etl.generate import generate
from etl.pipeline import close_step, run_month, score_step
from reports.publish import publish
from scoring.scheme import load_scheme
from tests.handmade import (
    YEAR,
    Hand,
    floor_of,
    half_up,
    sqlite_warehouse,  # noqa: F401 (the warehouse: SQLite only)
    write_hands,
)
from tests.helpers import table

H1 = YEAR[:6]

# A month of a handmade person is the duty component alone: attendance 50 + filing 30 + review
# min(20 + 40 × (rate − 0.9), 20) − 0.5 a late day − 5 an absent day, + adjustments (bonus cut to
# 3 a month); a full month is 100. Quarters, halves and the year take 0.3 × 季度民主评议 (every
# rater gives `rating` on every item, so the evaluation score is the rating).
TOP = Hand(  # 4 bonus points a month in the first quarter, cut to 3
    "Z001",
    "手工甲",
    "staff",
    rating=95,
    adjustments=[
        (m, rule, points, count)
        for m in YEAR[:3]
        for rule, points, count in (("key_project", 2, 1), ("praise_city", None, 2))
    ],
)
VETOED = Hand(  # the best 中层干部, but a disciplinary finding in August
    "Z002", "手工乙", "middle", rating=100, adjustments=[("2026-08", "discipline", None, 1)]
)
ORDINARY = Hand(
    "Z003",
    "手工丙",
    "staff",
    rating="称职",  # the level: 80 points
    late={"2026-02": 3},  # late still counts as attended: −0.5 each
    absent={"2026-04": 1},
    unreviewed={"2026-05": 5},
    adjustments=[("2026-06", "assessment_loss", -1.5, 1)],
)
NOMINEE = Hand("Z004", "手工丁", "staff", rating=70)  # 0.7 × 100 + 0.3 × 70 = 91
SECOND = Hand("Z005", "手工戊", "staff", rating=75)  # 92.5, nominated after NOMINEE

NOMINATIONS = {  # month -> (person, reason), in file order
    "2026-06": [
        ("Z001", "全年工作成效突出"),  # already a pacesetter by rank
        ("Z004", "牵头完成重点项目"),  # the unit's one place (floor(50 × 0.02) = 1)
        ("Z005", "参与重点项目攻坚"),  # over the cap
    ],
    "2026-12": [("Z002", "下半年工作突出")],  # vetoed in August
}


def run_year_with_nominations(inbox: Path, people: int, seed: int, hands: list[Hand]):
    """tests.handmade.run_year, with the hand's nominations written beside the generated ones
    (`nominations-hand.csv` sorts before `nominations.xlsx`, so the hand's come first)."""
    scheme = load_scheme("zoucheng")
    generate(inbox, people, "2026-01", 12, seed=seed, scheme=scheme)
    write_hands(inbox, scheme, hands)
    for month, rows in NOMINATIONS.items():
        period = f"2026-H{1 if month <= '2026-06' else 2}"
        frame = pd.DataFrame(rows, columns=["person_id", "reason"])
        frame = frame.assign(period=period, approved_by="局党组会")
        frame[["person_id", "period", "reason", "approved_by"]].to_csv(
            inbox / month / "nominations-hand.csv", index=False
        )
    months, closes = [], []
    for m in YEAR:
        loaded = run_month(m, f"m-{m}", "zoucheng")
        assert all(v["status"] != "rejected" for v in loaded["sources"].values()), loaded
        scored = score_step(loaded)
        months.append({**loaded, **scored})
        for period in scored["periods"]:
            closes.append(close_step(period, f"c-{period}", "zoucheng"))
    return scheme, months, closes


@pytest.fixture
def zoucheng_year(kaohe):
    # seed 282: office01 has 45 people in June and 46 in December, the five handmade people make
    # it 50 and 51, so its cap is 1; office02 (about 15) has a cap of 0
    hands = [TOP, VETOED, ORDINARY, NOMINEE, SECOND]
    scheme, months, closes = run_year_with_nominations(Path(kaohe.inbox), 60, 282, hands)
    return kaohe, scheme, months, closes


def test_zoucheng_year_from_the_scheme_file(zoucheng_year):
    kaohe, scheme, months, closes = zoucheng_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    period = table(url, "mart_period_score").set_index(["period", "person_id"])
    h1, h2, year = (period.loc[p] for p in ("2026-H1", "2026-H2", "2026"))

    def total(month: str, person: str) -> float:
        return monthly.loc[(month, person), "total_score"]

    # TOP: 100 a month; 2 + 2 × 1 bonus points cut to 3 in January to March
    assert [total(m, "Z001") for m in H1] == pytest.approx([103] * 3 + [100] * 3)
    assert h1.loc["Z001", "period_score"] == pytest.approx(0.7 * 101.5 + 0.3 * 95)  # 99.55
    top_year = 0.7 * (103 * 3 + 100 * 9) / 12 + 0.3 * 95  # 99.025
    assert year.loc["Z001", "period_score"] == pytest.approx(top_year)
    assert year.loc["Z001", "rank_in_scope"] == 1 and year.loc["Z001", "grade"] == "excellent"
    assert h1.loc["Z001", "pacesetter_route"] == "rank"

    # ORDINARY (称职 = 80), month by month (workdays: April 22, May 21)
    february = 100 - 0.5 * 3
    april = 50 + 100 * (21 / 22 - 1) + 30 + 20 - 5  # one absent day: the rate and −5
    may = 50 + 30 + (20 + 40 * (16 / 21 - 0.9))  # 16 of 21 filed days reviewed
    june = 100 - 1.5  # the range rule's points as the register gives them
    hand = {"2026-02": february, "2026-04": april, "2026-05": may, "2026-06": june}
    for m, value in hand.items():
        assert total(m, "Z003") == pytest.approx(value), m
    assert total("2026-01", "Z003") == pytest.approx(100.0)
    h1_mean = (100 * 2 + february + april + may + june) / 6
    assert h1.loc["Z003", "period_score"] == pytest.approx(0.7 * h1_mean + 0.3 * 80)
    year_mean = (100 * 8 + february + april + may + june) / 12
    assert year.loc["Z003", "period_score"] == pytest.approx(0.7 * year_mean + 0.3 * 80)

    # VETOED: 100 (0.7 × 100 + 0.3 × 100), the first middle manager; the August veto takes the
    # second half's pacesetter place (the next one gets it) and puts them in the worst grade
    # (良好) of H2 and the year
    assert h2.loc["Z002", "period_score"] == pytest.approx(100.0)
    assert h1.loc["Z002", "pacesetter_route"] == "rank" and not bool(h1.loc["Z002", "veto"])
    assert h2.loc["Z002", "rank_in_scope"] == 1 and bool(h2.loc["Z002", "veto"])
    assert not bool(h2.loc["Z002", "pacesetter"]) and h2.loc["Z002", "grade"] == "good"
    middle = h2[(h2["category"] == "middle") & (h2["rank_in_scope"] == 2)]
    assert list(middle["pacesetter_route"]) == ["rank"]
    assert bool(year.loc["Z002", "veto"]) and year.loc["Z002", "grade"] == "good"

    # NOMINEE (91) and SECOND (92.5): below the top 10%, nominated by the unit's Party group
    assert h1.loc["Z004", "period_score"] == pytest.approx(91.0)
    assert h1.loc["Z005", "period_score"] == pytest.approx(92.5)
    assert h1.loc["Z004", "pacesetter_route"] == "nomination"
    assert not bool(h1.loc["Z005", "pacesetter"])

    # rank pacesetters: floor(N × 0.10) of each category's N graded people who are not vetoed
    # (no at_least_one: a category of fewer than 10 has none), the best of them
    for name, rows in (("2026-H1", h1), ("2026-H2", h2)):
        eligible = rows[rows["graded"].astype(bool) & ~rows["veto"].astype(bool)]
        for category, people in eligible.groupby("category"):
            by_rank = people[people["pacesetter_route"] == "rank"]
            assert len(by_rank) == floor_of(len(people), "0.10"), (name, category)
            if len(by_rank):
                rest = people.drop(by_rank.index)
                assert by_rank["period_score"].min() >= rest["period_score"].max() - 1e-9
        assert not rows[rows["pacesetter"].astype(bool)]["veto"].astype(bool).any()
    others = period[~period.index.get_level_values("period").isin(["2026-H1", "2026-H2"])]
    assert not others["pacesetter"].astype(bool).any()  # halves only

    # nominations: at most floor(headcount × 0.02) a unit, the headcount being the unit's roster
    # rows in the half's last month; every nomination not taken is refused with its reason
    roster = table(url, "roster")
    nominated = table(url, "nomination")
    refused = table(url, "mart_nomination_refused")
    for name, rows in (("2026-H1", h1), ("2026-H2", h2)):
        heads = roster[roster["month"] == f"2026-{6 if name.endswith('1') else 12:02d}"]
        caps = {u: floor_of(n, "0.02") for u, n in heads.groupby("unit_id").size().items()}
        taken = rows[rows["pacesetter_route"] == "nomination"]
        out = refused[refused["period"] == name]
        assert len(taken) + len(out) == len(nominated[nominated["period"] == name]), name
        over = out[out["reason_refused"] == "over the unit's cap"].groupby("unit_id").size()
        for unit, cap in caps.items():
            n = int((taken["unit_id"] == unit).sum())
            assert n <= cap and (n == cap or unit not in over.index), (name, unit)
        assert caps[h1.loc["Z001", "unit_id"]] == 1  # 50 and 51 people: floor(1.0), floor(1.02)
        assert sum(caps.values()) == 1  # the other unit: floor(about 15 × 0.02) = 0
    reasons = refused.set_index(["period", "person_id"])["reason_refused"]
    assert reasons[("2026-H1", "Z001")] == "already a pacesetter by rank"
    assert reasons[("2026-H1", "Z005")] == "over the unit's cap"
    assert reasons[("2026-H2", "Z002")] == "vetoed"
    # the generator's nominee with a veto in the half, refused as well
    vetoed = refused[(refused["reason_refused"] == "vetoed") & (refused["person_id"] != "Z002")]
    assert len(vetoed) == 1
    p, who = vetoed.iloc[0]["period"], vetoed.iloc[0]["person_id"]
    assert bool(period.loc[(p, who), "veto"])

    # grades: 20% excellent, the rest good (the vetoed there, beyond any quota)
    for name, rows in (("2026-H1", h1), ("2026-H2", h2), ("2026", year)):
        graded = rows[rows["graded"].astype(bool)]
        for category, people in graded.groupby("category"):
            counts = people["grade"].value_counts().to_dict()
            excellent = half_up(len(people), "0.20")
            assert counts.get("excellent", 0) == excellent, (name, category)
            assert counts.get("good", 0) == len(people) - excellent, (name, category)

    # no bonus: the honour is the incentive
    assert scheme.bonus is None
    assert table(url, "mart_bonus_allocation").empty
    assert all(c["bonus_rows"] == 0 for c in closes)

    # the first half published: NOMINEE's notice names the route, the unit bulletin the refusals
    folder = kaohe.output / scheme.id / "2026-H1"
    publish("2026-H1", "notify", "p-notify", "zoucheng", kaohe, today=dt.date(2026, 7, 8))
    final = publish("2026-H1", "final", "p-final", "zoucheng", kaohe, today=dt.date(2026, 7, 15))
    assert final["sent"] > 0
    notice = (folder / "notice-Z004.html").read_text(encoding="utf-8")
    assert "手工丁" in notice and "91.00" in notice and "是（单位推荐）" in notice
    bulletin = (folder / f"bulletin-{h1.loc['Z004', 'unit_id']}.html").read_text(encoding="utf-8")
    assert "手工戊（Z005，6月推荐）：超出本单位推荐名额" in bulletin
    assert "（Z001，6月推荐）：已按排名当选" in bulletin
    assert not list(folder.glob("bonus-*"))
