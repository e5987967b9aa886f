"""The scheme file: loaded safely, refused with the key and the line."""

from __future__ import annotations

import pytest

from scoring.scheme import SchemeError, load_scheme, parse_scheme, scheme_path


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
    assert f"s.yaml:{at + 1}: adjustments.1.colour: unknown key" in str(err.value)


def test_negative_survey_weight_and_bad_range_are_refused():
    text = _demo_text().replace("de: 0.2,", "de: -0.2,").replace("[-2, -0.5]", "[-0.5, -2]")
    with pytest.raises(SchemeError) as err:
        parse_scheme(text, "s.yaml")
    msg = str(err.value)
    assert "negative weight for de" in msg and "[low, high]" in msg


def test_yaml_cannot_execute_code():
    text = "id: !!python/object/apply:os.system ['echo owned']\nname: x\n"
    with pytest.raises(SchemeError, match="not valid YAML"):
        parse_scheme(text, "evil.yaml")
