"""docker-compose.yml: valid Compose, with the services and shared settings kaohe needs. No Docker
engine runs here, so the file is checked against the Compose Specification's JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "data" / "compose-spec.json"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_file_is_valid_against_the_specification():
    if not SPEC.exists():
        import pytest

        pytest.skip("compose-spec.json not beside the project")
    jsonschema.validate(_compose(), json.loads(SPEC.read_text(encoding="utf-8")))


def test_every_airflow_component_shares_secrets_and_executor():
    services = _compose()["services"]
    airflow = ["api-server", "scheduler", "dag-processor", "triggerer", "worker"]
    assert set(airflow + ["postgres", "redis", "mailpit"]) <= set(services)
    for name in airflow:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "${KAOHE_JWT_SECRET:?set KAOHE_JWT_SECRET}"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://api-server:8080")
        assert env["KAOHE_WAREHOUSE_URL"].startswith("postgresql://")
        # only psycopg 3 is installed from the lock: every Airflow URL must name it
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith(
            "postgresql+psycopg_async://"
        )
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg://")
    assert services["worker"]["command"] == ["celery", "worker"]
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    credentials = re.findall(r"://[^:/@\s]+:([^@\s]+)@", text)
    assert credentials, "the database URLs carry credentials"
    assert all(c.startswith("${POSTGRES_PASSWORD") for c in credentials), credentials
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
