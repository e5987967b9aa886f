"""What a scheme decides about the generated sample data: its categories, survey forms and
register rules, or the demo's defaults, as one frozen `Profile` the generator draws from.

Kept apart from etl/generate.py, which draws and writes the data: this is the vocabulary, that the
drawing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scoring.scheme import AdjustmentRule, Scheme

# --- vocabulary of the demo scheme (scoring/schemes/demo.yaml) -----------------------------------
CAT_IDS = np.array(["leader", "middle", "staff", "judge", "assistant"])
CAT_NAMES = np.array(["班子成员", "中层干部", "一般工作人员", "员额法官", "审判辅助人员"])
LEADER, MIDDLE, STAFF, JUDGE, ASSISTANT, FAST = range(6)  # FAST: a judge of 立案庭 (速裁)
# a scheme without a role's own category: the first of these it has
FALLBACK = (
    ("leader", "middle", "staff"),
    ("middle", "staff", "leader"),
    ("staff", "middle", "leader"),
    ("judge", "assistant", "staff"),
    ("assistant", "staff", "middle"),
    ("fast_track", "judge", "assistant", "staff"),
)
SENIORITY = (0, 1, 2, 1, 2, 1)  # of each role within its line (leader, middle or judge, staff)
ITEMS = np.array(["de", "neng", "qin", "ji", "lian"])
# worst first, for np.digitize over LEVEL_FLOORS
LEVELS = np.array(["不称职", "基本称职", "称职", "优秀"])
LEVEL_FLOORS = [60, 75, 90]
# in priority order: a rater who fits two relations to one ratee keeps the first
RELATIONS = np.array(["self", "superior", "subordinate", "peer", "public"])
SELF, PUBLIC = 0, 4


@dataclass(frozen=True)
class Rule:
    """An adjustment rule as the register writes it: fixed points, a grid of allowed points or a
    veto, how common it is, who issues the document and what the note says."""

    rule: str
    points: float | None  # fixed points; None: a range (grid) or a veto
    share: float  # of the register's rows
    issuer: str
    notes: tuple[str, ...]
    grid: tuple[float, ...] = ()  # the values a range rule's rows take
    veto: bool = False


def _grid(lo: float, hi: float) -> tuple[float, ...]:
    """Points a clerk writes inside [lo, hi]: halves when the range allows, else tenths."""
    step = 0.5 if hi - lo >= 1 and (lo * 2).is_integer() and (hi * 2).is_integer() else 0.1
    k = np.arange(np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9) + 1)
    return tuple(np.round(k * step, 6).tolist()) or (lo, hi)


DEMO_RULES = (
    Rule("praise_bureau", 0.5, 0.28, "局办", ("受到局领导书面表扬", "专项工作获局领导肯定")),
    Rule("praise_city", 1.0, 0.10, "市府办", ("获市级通报表扬", "经验做法被市级转发推广")),
    Rule("praise_province", 2.0, 0.03, "省府办", ("获省级通报表扬",)),
    Rule("lecture", 0.1, 0.17, "县委党校", ("为全县干部培训班授课", "开展业务知识讲座")),
    Rule(
        "assessment_loss",
        None,
        0.20,
        "县考核办",
        ("重点工作考核失分", "专项督查发现问题失分"),
        _grid(-2.0, -0.5),
    ),
    Rule("meeting_absence", -0.5, 0.15, "县委办", ("无故缺席全体干部大会", "无故缺席专题会议")),
    Rule("media_exposure", -2.0, 0.07, "县委宣传部", ("工作作风问题被媒体曝光",)),
    Rule("disciplinary", None, 0, "县纪委", ("违反工作纪律被查实，给予党内警告处分",), veto=True),
)
# who issues the document behind a scheme's rule, by a word of its name (first match)
ISSUERS = (
    ("省", "省府办"),
    ("市", "市府办"),
    ("媒体", "县委宣传部"),
    ("曝光", "县委宣传部"),
    ("纪", "县纪委"),
    ("授课", "县委党校"),
    ("会", "县委办"),
    ("院", "院办"),
    ("局", "局办"),
)


# --- what a scheme decides about the data -------------------------------------------------------
@dataclass(frozen=True)
class Form:
    """One survey component as raters fill it in: its items, who answers, how often, in what."""

    items: np.ndarray
    relations: np.ndarray  # bool per RELATIONS: the relations written
    levels: np.ndarray  # labels worst first; empty: numbers only
    floors: np.ndarray  # the score from which each level above the worst applies
    rated: np.ndarray  # bool per role (FAST included): whose category the component rates
    cadence: str = "quarter"  # month, quarter or year: when a round is held
    min_raters: int = 3
    public_all: bool = False  # everyone is rated by the public, not only those serving it
    thin: bool = False  # a few relations of a few ratees stay below min_raters


@dataclass(frozen=True)
class Profile:
    """Everything the scheme decides about the generated data, or the demo's defaults.

    The defaults reproduce the data the demo schemes were fitted to, draw for draw: `exercise`
    (a scheme's sample) adds what makes every rule of a scheme show up in a short run.
    """

    kind: str  # the organisation when the caller names none
    cat_ids: np.ndarray  # category id per role
    cat_names: np.ndarray
    fast_track: bool  # judges of 立案庭 are their own category
    forms: tuple[Form, ...]
    rules: tuple[Rule, ...]
    pacesetters: str | None  # the pacesetter period whose last month brings nominations
    nominate: int = 2  # at most this many a unit
    cap: float = 0.0  # the scheme's nomination cap (share of the unit's headcount)
    exercise: bool = False

    @classmethod
    def of(cls, scheme: Scheme | None) -> Profile:
        if scheme is None:
            form = Form(ITEMS, np.ones(5, bool), LEVELS, np.array(LEVEL_FLOORS), np.ones(6, bool))
            ids, names = np.append(CAT_IDS, "judge"), np.append(CAT_NAMES, "员额法官")
            return cls("mixed", ids, names, False, (form,), DEMO_RULES, "half")
        ids = _category_ids(scheme)
        cases = any(i.measure.startswith("cases.") for c in scheme.components for i in c.indicators)
        ps = scheme.pacesetters
        nominates = ps is not None and ps.nomination_cap > 0
        return cls(
            kind="court" if cases else "office",
            cat_ids=np.array(ids),
            cat_names=np.array([scheme.categories[c] for c in ids]),
            fast_track="fast_track" in scheme.categories,
            forms=tuple(_forms(scheme, ids)),
            rules=tuple(_rule(r) for r in scheme.adjustments),
            pacesetters=ps.period if nominates else None,
            nominate=3,
            cap=ps.nomination_cap if nominates else 0.0,
            exercise=True,
        )

    @property
    def vetoes(self) -> list[str]:
        return [r.rule for r in self.rules if r.veto]


def _category_ids(scheme: Scheme) -> list[str]:
    """Each role's category: its own, else the first fallback the scheme has; a scheme with its
    own names (none of the fallbacks) has its categories taken in order, senior roles first."""
    ids = [next((c for c in chain if c in scheme.categories), "") for chain in FALLBACK]
    spare = [c for c in scheme.categories if c not in ids and c != "fast_track"]
    spare = spare or [next(iter(scheme.categories))]
    return [c or spare[SENIORITY[i] * len(spare) // 3] for i, c in enumerate(ids)]


def _forms(scheme: Scheme, ids: list[str]) -> list[Form]:
    """Monthly components get a round every month; period components a quarterly round when the
    quarter or half takes them, else only the year-end round."""
    named = {k: set(p.components) for k, p in scheme.periods.items()}
    out = []
    for c in scheme.components:
        if c.survey is None:
            continue
        s = c.survey
        if any(c.weight_for(k) > 0 for k in scheme.categories):
            cadence = "month"
        elif c.id in named.get("quarter", set()) | named.get("half", set()):
            cadence = "quarter"
        else:
            cadence = "year"
        levels = sorted(s.levels.items(), key=lambda kv: kv[1])  # worst first
        points = np.array([v for _, v in levels], float)
        rated = scheme.survey_categories(c.id)
        weighted = {r for r, w in s.relations.items() if w > 0}
        out.append(
            Form(
                items=np.array(list(s.items)),
                relations=np.isin(RELATIONS, list(weighted)),
                levels=np.array([k for k, _ in levels], dtype=str),
                floors=(points[1:] + points[:-1]) / 2,  # a rating takes the nearest level
                rated=np.isin(np.array(ids), list(rated)),
                cadence=cadence,
                min_raters=s.min_raters,
                public_all="public" in weighted,
                thin=s.min_raters > 1,
            )
        )
    return out


def _rule(r: AdjustmentRule) -> Rule:
    """Small awards and deductions are common, big ones rare; notes and issuer from the name."""
    name = r.name or r.rule
    if r.veto:
        return Rule(r.rule, None, 0, "县纪委", (f"经查实：{name}，实行一票否决",), veto=True)
    issuer = next((who for word, who in ISSUERS if word in name), "县考核办")
    if r.points is None:  # bars from honours and carries no points: rare, points left blank
        return Rule(r.rule, None, 0.2, issuer, (f"经查实：{name}，取消本期评先评优资格",))
    lo, hi = r.range or (r.points, r.points)
    notes = (f"{name}，按规定加分", f"经审核认定：{name}")
    if lo + hi < 0:
        notes = (f"{name}，按规定扣分", f"经督查核实：{name}")
    share = 1 / (0.5 + abs(lo + hi) / 2)
    grid = _grid(lo, hi) if r.range else ()
    return Rule(r.rule, None if r.range else float(r.points), share, issuer, notes, grid)
