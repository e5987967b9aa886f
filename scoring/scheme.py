"""The scheme file (考核方案): typed model, loading and validation.

A scheme is written by the assessment office, not by programmers, so every refusal names the key
path and the line of the YAML file. The YAML is read with the safe loader only: a scheme can never
execute anything.
"""

from __future__ import annotations

import os
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


class AdjustmentRule(_Strict):
    rule: str
    name: str = ""
    points: Number | tuple[Number, Number] | None = None
    veto: bool = False

    @model_validator(mode="after")
    def _points_or_veto(self) -> AdjustmentRule:
        if self.veto and self.points is not None:
            raise ValueError("a veto rule carries no points")
        if not self.veto and self.points is None:
            raise ValueError("a rule needs points (a number or a range [low, high]) or veto: true")
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
    min_months: int = 1
    components: dict[str, Number] = Field(default_factory=dict)


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
    grades: list[Grade]


class Pacesetters(_Strict):
    period: Literal["month", "quarter", "half", "year"] = "half"
    share: Number = 0.10
    rounding: Literal["floor", "half_up"] = "floor"
    at_least_one: bool = False
    nomination_cap: Number = 0.0


class Pool(_Strict):
    per_capita: Number | None = None
    per_unit: dict[str, Number] | None = None


class Bonus(_Strict):
    period: Literal["quarter", "half", "year"] = "year"
    pool: Pool
    method: Literal["grade_coefficient", "score_share"] = "grade_coefficient"
    coefficients: dict[str, Number] = Field(default_factory=dict)
    post_coefficient: bool = False
    veto_gets: Number = 0
    rounding: Literal["cent", "yuan"] = "cent"


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
    long_pending_days: int = 365
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
        return self


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Key path -> 1-based line, so a refusal can point the office at the line to fix."""
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[path + (k.value,)] = k.start_mark.line + 1
            _line_index(v, path + (k.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, path + (i,), out)
    return out


def _where(loc: tuple, lines: dict[tuple, int]) -> tuple[str, int | None]:
    path = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper() or "[" in str(p)))
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return ".".join(map(str, path)) or "(top)", lines[path[:cut]]
    return ".".join(map(str, path)), None


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
            key, line = _where(err["loc"], lines)
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
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
