"""The scheme file (考核方案): typed model, loading and validation.

A scheme is written by the assessment office, not by programmers, so every refusal names the key
path and the line of the YAML file. The YAML is read with the safe loader only: a scheme can never
execute anything.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEME_DIR = Path(__file__).parent / "schemes"
DEFAULT_SCHEME = "demo"


class SchemeError(ValueError):
    """A scheme file that kaohe refuses to run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Number = float
PerCategory = Number | dict[str, Number]


class Indicator(_Strict):
    id: str
    name: str = ""
    measure: str
    target: PerCategory | None = None
    points: Number | None = None
    coefficient: Number | None = None
    per_unit: Number | None = None
    min: Number | None = None
    max: Number | None = None
    veto_below: Number | None = None
    veto_above: Number | None = None
    veto_points: Number | None = None
    neutral_points: Number | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Indicator:
        target_form = [k for k in ("target", "points", "coefficient") if getattr(self, k) is None]
        if self.per_unit is None and target_form:
            raise ValueError(
                "an indicator is either the target form (target, points, coefficient) or the count "
                f"form (per_unit); missing: {', '.join(target_form)}"
            )
        if self.per_unit is not None and (self.target is not None or self.coefficient is not None):
            raise ValueError("per_unit (count form) cannot be combined with target or coefficient")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        if (
            self.veto_below is not None
            and self.veto_above is not None
            and self.veto_below >= self.veto_above
        ):
            raise ValueError("veto bounds overlap: veto_below must lie below veto_above")
        return self

    def target_for(self, category: str) -> float | None:
        if isinstance(self.target, dict):
            return self.target.get(category)
        return self.target

    @property
    def neutral(self) -> float:
        """The score of "no basis": on target unless the scheme says otherwise."""
        if self.neutral_points is not None:
            return self.neutral_points
        return self.points if self.points is not None else 0.0


class Survey(_Strict):
    items: dict[str, Number]
    relations: dict[Literal["self", "superior", "peer", "subordinate", "public"], Number]
    levels: dict[str, Number] = Field(default_factory=dict)
    min_raters: int = 1
    normalize: Literal["none", "rater_mean"] = "none"
    neutral_points: Number = 0

    @field_validator("items", "relations")
    @classmethod
    def _non_negative(cls, v: dict[str, Number]) -> dict[str, Number]:
        bad = [k for k, w in v.items() if w < 0]
        if bad:
            raise ValueError(f"negative weight for {', '.join(bad)}")
        return v

    @field_validator("levels")
    @classmethod
    def _level_range(cls, v: dict[str, Number]) -> dict[str, Number]:
        bad = [k for k, p in v.items() if not 0 <= p <= 100]
        if bad:
            raise ValueError(f"level points must lie in 0-100: {', '.join(bad)}")
        return v


class Component(_Strict):
    id: str
    name: str = ""
    weight: PerCategory | None = None
    indicators: list[Indicator] = Field(default_factory=list)
    survey: Survey | None = None

    @field_validator("weight")
    @classmethod
    def _weight_non_negative(cls, v: PerCategory | None) -> PerCategory | None:
        values = v.values() if isinstance(v, dict) else [v] if v is not None else []
        if any(w < 0 for w in values):
            raise ValueError("negative weight")
        return v

    @model_validator(mode="after")
    def _indicators_or_survey(self) -> Component:
        if bool(self.indicators) == (self.survey is not None):
            raise ValueError("a component has either indicators or a survey")
        ids = [i.id for i in self.indicators]
        if dup := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"indicator id given twice: {', '.join(dup)}")
        return self

    def weight_for(self, category: str) -> float:
        """The monthly weight for a category; 0 (or left out) means not assessed on it."""
        if isinstance(self.weight, dict):
            return float(self.weight.get(category, 0.0))
        return float(self.weight or 0.0)


class AdjustmentRule(_Strict):
    rule: str
    name: str = ""
    points: Number | tuple[Number, Number] | None = None
    veto: bool = False
    no_honours: bool = False  # 取消评先评优: never a pacesetter in a period with such a row

    @model_validator(mode="after")
    def _points_or_veto(self) -> AdjustmentRule:
        if self.veto and self.points is not None:
            raise ValueError("a veto rule carries no points")
        if not self.veto and not self.no_honours and self.points is None:
            raise ValueError(
                "a rule needs points (a number or a range [low, high]), veto: true or "
                "no_honours: true"
            )
        if isinstance(self.points, tuple) and self.points[0] > self.points[1]:
            raise ValueError("a points range is written [low, high]")
        return self

    @property
    def range(self) -> tuple[float, float] | None:
        return self.points if isinstance(self.points, tuple) else None


class AdjustmentCaps(_Strict):
    bonus_per_month: Number | None = None
    bonus_per_year: Number | None = None


class Period(_Strict):
    min_months: int = Field(default=1, ge=1)
    components: dict[str, PerCategory] = Field(default_factory=dict)
    adjustments: Literal["mean", "sum"] = "mean"

    @field_validator("components")
    @classmethod
    def _shares(cls, v: dict[str, PerCategory]) -> dict[str, PerCategory]:
        flat = [w for x in v.values() for w in (x.values() if isinstance(x, dict) else [x])]
        if any(w < 0 for w in flat):
            raise ValueError("negative weight")
        cats = {k for x in v.values() if isinstance(x, dict) for k in x} or {""}
        for k in cats:
            total = sum(x.get(k, 0.0) if isinstance(x, dict) else x for x in v.values())
            if total > 1 + 1e-9:
                who = f" for category {k}" if k else ""
                raise ValueError(f"period component weights add up to more than 1{who}")
        return v

    def weight_for(self, cid: str, category: str) -> float:
        """A period component's weight for a category: a number, or a number per category."""
        w = self.components.get(cid, 0.0)
        return float(w.get(category, 0.0) if isinstance(w, dict) else w)


class Grade(_Strict):
    grade: str
    name: str = ""
    share: Number | None = None
    min: Number | None = None


class Grading(_Strict):
    scope: Literal["category", "unit_category"] = "category"
    method: Literal["relative", "absolute"] = "relative"
    ties: Literal["strict", "generous"] = "strict"
    tiebreak: list[str] = Field(default_factory=list)
    grades: list[Grade] = Field(min_length=1)

    @model_validator(mode="after")
    def _grades_fit_method(self) -> Grading:
        ids = [g.grade for g in self.grades]
        if len(ids) != len(set(ids)):
            raise ValueError("grade given twice")
        if self.method == "relative":
            rest = [g.grade for g in self.grades if g.share is None]
            if len(rest) != 1:
                raise ValueError(
                    "relative grading: exactly one grade has no share (it takes the rest)"
                )
            shares = [g.share for g in self.grades if g.share is not None]
            if any(x < 0 for x in shares):
                raise ValueError("negative share")
            if sum(shares) > 1 + 1e-9:
                raise ValueError("grade shares add up to more than 1")
        else:
            mins = [g.min for g in self.grades[:-1]]
            if any(m is None for m in mins):
                raise ValueError("absolute grading: every grade but the last needs min")
            if mins != sorted(mins, reverse=True):
                raise ValueError("absolute grading: grades go best first, min descending")
        return self


class Streak(_Strict):
    """第一方阵: the top `share` of a monthly ranking; `months` consecutive months in it."""

    share: Number = Field(gt=0, le=1)
    months: int = Field(default=2, ge=1)


class Pacesetters(_Strict):
    period: Literal["month", "quarter", "half", "year"] = "half"
    share: Number = Field(default=0.10, ge=0, le=1)
    rounding: Literal["floor", "half_up"] = "floor"
    at_least_one: bool = False
    nomination_cap: Number = Field(default=0.0, ge=0, le=1)
    streak: Streak | None = None


class Pool(_Strict):
    per_capita: Number | None = None
    per_unit: dict[str, Number] | None = None
    total: Number | None = None  # one fund for the whole scheme (a county's 激励资金总额)

    def given(self) -> list[str]:
        return [k for k in ("per_capita", "per_unit", "total") if getattr(self, k) is not None]

    @model_validator(mode="after")
    def _one_kind(self) -> Pool:
        if len(self.given()) != 1:
            raise ValueError("give one of per_capita, per_unit and total")
        return self


class Bonus(_Strict):
    period: Literal["quarter", "half", "year"] = "year"
    pool: Pool
    method: Literal["grade_coefficient", "score_share"] = "grade_coefficient"
    coefficients: dict[str, Number] = Field(default_factory=dict)
    post_coefficient: bool = False
    veto_gets: Number = Field(default=0, ge=0)
    rounding: Literal["cent", "yuan"] = "cent"

    @model_validator(mode="after")
    def _pool(self) -> Bonus:
        amounts = [a for a in (self.pool.per_capita, self.pool.total) if a is not None]
        amounts += list((self.pool.per_unit or {}).values())
        places = 0 if self.rounding == "yuan" else 2
        for a in amounts:
            if a < 0 or Decimal(str(a)) != Decimal(str(a)).quantize(Decimal(1).scaleb(-places)):
                raise ValueError(
                    f"pool amount {a}: yuan, not negative, with at most {places} decimals"
                )
        if any(c < 0 for c in self.coefficients.values()):
            raise ValueError("negative coefficient")
        return self


class Publication(_Strict):
    appeal_days: int = 5
    finance: list[str] = Field(default_factory=list)
    recipients: dict[str, list[str]] = Field(default_factory=dict)


class Scheme(_Strict):
    id: str
    name: str
    year: int
    timezone: str = "Asia/Shanghai"
    categories: dict[str, str]
    score_range: tuple[Number, Number] | None = None
    long_pending_days: int = Field(default=365, ge=0)
    max_quarantine_share: Number = Field(default=0.05, ge=0, le=1)
    components: list[Component] = Field(default_factory=list)
    adjustments: list[AdjustmentRule] = Field(default_factory=list)
    adjustment_caps: AdjustmentCaps = Field(default_factory=AdjustmentCaps)
    periods: dict[Literal["quarter", "half", "year"], Period] = Field(default_factory=dict)
    grading: Grading | None = None
    pacesetters: Pacesetters | None = None
    bonus: Bonus | None = None
    publication: Publication = Field(default_factory=Publication)

    # --- what validation of the source extracts needs -------------------------------------
    def category_id(self) -> dict[str, str]:
        """Every way a roster may name a category (its id or its Chinese name) -> the id."""
        out = {k: k for k in self.categories}
        out.update({v: k for k, v in self.categories.items()})
        return out

    def rules(self) -> dict[str, AdjustmentRule]:
        return {r.rule: r for r in self.adjustments}

    def survey_items(self) -> dict[str, str]:
        """Survey item id -> the id of the survey component it feeds."""
        return {i: c.id for c in self.components if c.survey for i in c.survey.items}

    def survey_levels(self) -> dict[str, float]:
        """Level label -> points over all survey components (the first definition wins)."""
        out: dict[str, float] = {}
        for c in self.components:
            if c.survey:
                for k, v in c.survey.levels.items():
                    out.setdefault(k, v)
        return out

    @model_validator(mode="after")
    def _cross_references(self) -> Scheme:
        ids = [c.id for c in self.components]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"component id given twice: {', '.join(sorted(dup))}")
        rules = [r.rule for r in self.adjustments]
        if len(rules) != len(set(rules)):
            raise ValueError("adjustment rule given twice")
        items = [i for c in self.components if c.survey for i in c.survey.items]
        if len(items) != len(set(items)):
            raise ValueError("a survey item belongs to two components; item ids must be unique")
        for c in self.components:
            if isinstance(c.weight, dict):
                unknown = set(c.weight) - set(self.categories)
                if unknown:
                    raise ValueError(
                        f"components.{c.id}.weight: unknown category {sorted(unknown)}"
                    )
        self._check_components()
        self._check_references()
        return self

    def _check_components(self) -> None:
        from scoring.measures import MEASURES

        in_periods = {c for p in self.periods.values() for c in p.components}
        for c in self.components:
            assessed = [k for k in self.categories if c.weight_for(k) > 0]
            if c.indicators and not assessed:
                raise ValueError(f"components.{c.id}: a monthly component without a weight")
            if c.survey and not assessed and c.id not in in_periods:
                raise ValueError(
                    f"components.{c.id}: a survey component needs a monthly weight or a place in "
                    "periods.<period>.components"
                )
            if c.survey and assessed and c.id in in_periods:
                raise ValueError(
                    f"components.{c.id}: a period component has no monthly weight (its rounds "
                    "feed periods, not months)"
                )
            for ind in c.indicators:
                where = f"components.{c.id}.indicators.{ind.id}"
                if ind.measure not in MEASURES:
                    raise ValueError(
                        f"{where}.measure: unknown measure {ind.measure!r}; known: "
                        + ", ".join(sorted(MEASURES))
                    )
                if isinstance(ind.target, dict):
                    unknown = set(ind.target) - set(self.categories)
                    if unknown:
                        raise ValueError(f"{where}.target: unknown category {sorted(unknown)}")
                    lacking = [k for k in assessed if k not in ind.target]
                    if lacking and ind.per_unit is None:
                        raise ValueError(f"{where}.target: no target for category {lacking}")

    def _check_references(self) -> None:
        ids = {c.id: c for c in self.components}
        for kind, p in self.periods.items():
            for cid, w in p.components.items():
                if cid not in ids or ids[cid].survey is None:
                    raise ValueError(
                        f"periods.{kind}.components: {cid!r} is not a survey component"
                    )
                unknown = sorted(set(w) - set(self.categories)) if isinstance(w, dict) else []
                if unknown:
                    raise ValueError(f"periods.{kind}.components.{cid}: unknown category {unknown}")
        if self.score_range and self.score_range[0] > self.score_range[1]:
            raise ValueError("score_range is written [low, high]")
        if (self.pacesetters or self.bonus) and not self.grading:
            raise ValueError("pacesetters and bonus need a grading section")
        if self.grading:
            unknown = [t for t in self.grading.tiebreak if t not in ids]
            if unknown:
                raise ValueError(f"grading.tiebreak: unknown component {unknown}")
        if self.bonus and self.grading and self.bonus.method == "grade_coefficient":
            grades = [g.grade for g in self.grading.grades]
            unknown = set(self.bonus.coefficients) - set(grades)
            lacking = [g for g in grades if g not in self.bonus.coefficients]
            if unknown or lacking:
                raise ValueError(
                    "bonus.coefficients: one coefficient per grade of grading.grades "
                    f"(unknown: {sorted(unknown)}, missing: {lacking})"
                )

    # --- what scoring needs ------------------------------------------------------------------
    def component(self, cid: str) -> Component:
        return next(c for c in self.components if c.id == cid)

    def survey_categories(self, cid: str) -> set[str]:
        """The categories a survey component rates: a monthly weight or a period weight above 0."""
        c = self.component(cid)
        return {
            k
            for k in self.categories
            if c.weight_for(k) > 0 or any(p.weight_for(cid, k) > 0 for p in self.periods.values())
        }

    def period_rules(self, kind: str) -> Period:
        """A period's rules; a kind the scheme leaves out is a plain mean of the months."""
        return self.periods.get(kind, Period())  # type: ignore[arg-type]


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Key path -> 1-based line, so a refusal can point the office at the line to fix."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[path + (k.value,)] = k.start_mark.line + 1
            _line_index(v, path + (k.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, path + (i,), out)
    return out


def _where(loc: tuple, lines: dict[tuple, int], data: Any) -> tuple[str, int | None]:
    """The key path as the office reads it and the line of its nearest key in the file."""
    path = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper() or "[" in str(p)))
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return _where_named(path, data) or "(top)", lines[path[:cut]]
    return _where_named(path, data), None


def _resolve(dotted: str, data: Any) -> tuple:
    """`components.casework.indicators.closed` -> ("components", 0, "indicators", 2): people name
    list entries by id (or rule, grade), but lines are indexed by position."""
    out: list[Any] = []
    node = data
    for part in dotted.split("."):
        if isinstance(node, list):
            idx = next(
                (
                    i
                    for i, v in enumerate(node)
                    if isinstance(v, dict) and part in (v.get("id"), v.get("rule"), v.get("grade"))
                ),
                None,
            )
            if idx is None:
                break
            out.append(idx)
            node = node[idx]
        elif isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        else:
            break
    return tuple(out)


def _where_named(loc: tuple, data: Any) -> str:
    """A key path with list positions replaced by the entry's id, as the office reads it."""
    parts, node = [], data
    for p in loc:
        if isinstance(p, int) and isinstance(node, list) and p < len(node):
            node = node[p]
            name = (
                node.get("id") or node.get("rule") or node.get("grade")
                if isinstance(node, dict)
                else None
            )
            parts.append(str(name if name is not None else p))
        else:
            parts.append(str(p))
            node = node.get(p) if isinstance(node, dict) else None
    return ".".join(parts)


def parse_scheme(text: str, source: str = "<scheme>") -> Scheme:
    """Validate scheme YAML text; SchemeError lists every problem with its key and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemeError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or node is None:
        raise SchemeError(f"{source}: a scheme is a mapping of keys (id, name, year, ...)")
    lines = _line_index(node)
    try:
        return Scheme.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc, what = err["loc"], err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                what = "unknown key"
            elif not loc:  # a check across the scheme: its message starts with the key path
                head, _, rest = what.partition(": ")
                if rest and re.fullmatch(r"[\w.-]+", head):
                    loc, what = _resolve(head, data), rest
            key, line = _where(loc, lines, data)
            msgs.append(f"{source}:{line or '?'}: {key}: {what}")
        raise SchemeError("scheme refused:\n  " + "\n  ".join(dict.fromkeys(msgs))) from None


def scheme_path(ref: str | None = None) -> Path:
    """A scheme by path, or by id of a file under scoring/schemes/ (`demo`, `court`, ...)."""
    ref = ref or os.environ.get("KAOHE_SCHEME") or DEFAULT_SCHEME
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    for cand in (SCHEME_DIR / f"{ref}.yaml", SCHEME_DIR / f"{ref}.yml"):
        if cand.exists():
            return cand
    for cand in sorted(SCHEME_DIR.glob("*.y*ml")):
        if yaml.safe_load(cand.read_text(encoding="utf-8")).get("id") == ref:
            return cand
    raise SchemeError(f"no scheme file or scheme id {ref!r} (looked in {SCHEME_DIR})")


def load_scheme(ref: str | None = None) -> Scheme:
    path = scheme_path(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemeError(f"cannot read scheme file {path}: {exc}") from exc
    return parse_scheme(text, str(path))
