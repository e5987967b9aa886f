"""The scheme file: loaded safely, refused with the key and the line."""

from __future__ import annotations

import pytest

from scoring.scheme import SCHEME_DIR, SchemeError, load_scheme, parse_scheme, scheme_path


def _demo_text() -> str:
    return scheme_path("demo").read_text(encoding="utf-8")


def test_demo_scheme_gives_what_validation_needs():
    s = load_scheme("demo")
    assert s.category_id()["员额法官"] == "judge" and s.category_id()["staff"] == "staff"
    assert s.rules()["assessment_loss"].range == (-2, -0.5)
    assert s.rules()["disciplinary"].veto
    assert s.survey_levels()["基本称职"] == 65
    assert s.survey_items()["lian"] == "conduct"
    assert s.max_quarantine_share == 0.05


def test_scheme_by_id_and_by_path():
    assert load_scheme("demo-2026").id == load_scheme(str(scheme_path("demo"))).id


def test_unknown_key_is_refused_with_its_line():
    text = _demo_text()
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if "rule: praise_city" in ln)
    lines[at] = lines[at].replace("points: 1}", "points: 1, colour: red}")
    with pytest.raises(SchemeError) as err:
        parse_scheme("\n".join(lines), "s.yaml")
    assert f"s.yaml:{at + 1}: adjustments.praise_city.colour: unknown key" in str(err.value)


def test_negative_survey_weight_and_bad_range_are_refused():
    text = _demo_text().replace("de: 0.2,", "de: -0.2,").replace("[-2, -0.5]", "[-0.5, -2]")
    with pytest.raises(SchemeError) as err:
        parse_scheme(text, "s.yaml")
    msg = str(err.value)
    assert "negative weight for de" in msg and "[low, high]" in msg


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/new:subprocess.check_output",
        "!!python/name:os.system",
    ],
)
def test_yaml_cannot_execute_code(tmp_path, tag):
    mark = tmp_path / "owned"
    text = f"id: {tag} ['touch {mark}']\nname: x\n"
    with pytest.raises(SchemeError, match="not valid YAML"):
        parse_scheme(text, "evil.yaml")
    assert not mark.exists()


def test_a_formula_in_a_number_is_text_never_evaluated(tmp_path):
    mark = tmp_path / "owned"
    formula = f"__import__('os').system('touch {mark}')"
    message, line = _refusal("points: 0.5}", f'points: "{formula}"}}')
    assert f"s.yaml:{line}: adjustments" in message and "points" in message
    assert not mark.exists()


def _refusal(old: str, new: str) -> tuple[str, int]:
    """Refuse the demo scheme with `old` replaced by `new`: the message and the edited line."""
    text = _demo_text()
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    with pytest.raises(SchemeError) as err:
        parse_scheme(text.replace(old, new, 1), "s.yaml")
    return str(err.value), line


@pytest.mark.parametrize(
    "old,new,expected,at",
    [
        (
            "measure: cases.closed_count",
            "measure: cases.closed_cnt",
            "components.casework.indicators.closed.measure: unknown measure 'cases.closed_cnt'",
            None,
        ),
        ("weight: {judge: 0.7,", "weight: {judge: -0.7,", "casework.weight: negative", None),
        ("weight: {judge: 0.7, assistant: 0.5}", "weight: {jduge: 0.7}", "unknown category", None),
        (
            "weight: {judge: 0.7, assistant: 0.5}\n",
            "\n",
            "components.casework: a monthly component without a weight",
            "- id: casework",
        ),
        ("share: 0.80}", "share: 0.90}", "grading: grade shares add up to more than 1", "grading:"),
        (
            "veto_below: 0.80, veto_points: 0}",
            "veto_below: 0.80, veto_above: 0.70, veto_points: 0}",
            "indicators.acceptance: veto bounds overlap",
            "{id: acceptance",
        ),
        (
            "tiebreak: [casework, diligence]",
            "tiebreak: [casework, zeal]",
            "unknown component",
            None,
        ),
        ("general: 0.6}", "generl: 0.6}", "one coefficient per grade", "coefficients:"),
        (
            "{id: duration, name: 平均审理天数",
            "{id: closed, name: 平均审理天数",
            "components.casework: indicator id given twice: closed",
            "- id: casework",
        ),
        (
            "year: {min_months: 6, components: {conduct: 0.3}}",
            "year: {components: {conduct: 1.3}}",
            "periods.year.components: period component weights add up to more than 1",
            None,
        ),
        (
            "year: {min_months: 6, components: {conduct: 0.3}}",
            "year: {components: {conduct: {staff: 0.3, judge: 1.2}}}",
            "period component weights add up to more than 1 for category judge",
            None,
        ),
        (
            "year: {min_months: 6, components: {conduct: 0.3}}",
            "year: {components: {conduct: {staf: 0.3}}}",
            "periods.year.components.conduct: unknown category ['staf']",
            None,
        ),
        (
            "pool: {per_capita: 6000}",
            "pool: {per_capita: 6000, total: 100000}",
            "bonus.pool: give one of per_capita, per_unit and total",
            None,
        ),
    ],
)
def test_bad_schemes_are_refused_with_key_and_line(old, new, expected, at):
    msg, line = _refusal(old, new)
    if at is not None:
        text = _demo_text()
        line = text[: text.index(at)].count("\n") + 1
    assert expected in msg and f"s.yaml:{line}:" in msg, msg


def test_weight_and_target_per_category():
    s = load_scheme("demo")
    casework = s.component("casework")
    assert casework.weight_for("judge") == 0.7 and casework.weight_for("staff") == 0.0
    closed = casework.indicators[0]
    assert closed.target_for("judge") == 12 and closed.neutral == 30


@pytest.mark.parametrize("path", sorted(SCHEME_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scheme_runs_from_its_file(path):
    scheme = load_scheme(str(path))
    assert load_scheme(scheme.id).id == scheme.id  # reachable by id as well
    assert scheme.grading is not None and scheme.components
