"""docker-compose.yml cannot run here (no Docker engine): check it is valid and consistent with
the settings, and that the generated docs match the code."""

from __future__ import annotations

from pathlib import Path

import yaml

from channelsync.settings import Settings
from store.state_machine import render_transition_table

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_with_healthchecks() -> None:
    services = _compose()["services"]
    for name in ("kafka", "postgres", "migrate", "worker", "prometheus", "grafana"):
        assert name in services, name
    for name in ("kafka", "postgres", "worker", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["migrate"]["command"] == ["channelsync", "db", "upgrade"]
    assert (
        services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    )


def test_compose_environment_names_are_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    services = _compose()["services"]
    for name in ("migrate", "worker"):
        env = services[name]["environment"]
        unknown = sorted(set(env) - fields)
        assert not unknown, f"{name}: {unknown} are not settings"


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    port = _compose()["services"]["worker"]["environment"]["METRICS_PORT"]
    assert f"worker:{port}" in targets


def test_state_machine_doc_is_generated_from_the_code() -> None:
    doc = (ROOT / "docs" / "state-machine.md").read_text()
    assert doc.endswith(render_transition_table())


def test_dashboard_queries_name_existing_metrics() -> None:
    """Every PromQL expression in the Grafana dashboard names a metric channelsync exports."""
    import json
    import re

    from prometheus_client.metrics import MetricWrapperBase

    from channelsync import metrics

    exported: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for desc in value.describe():
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
                exported.update(desc.name + s for s in suffixes.get(desc.type, [""]))
    dash = json.loads((ROOT / "deploy/grafana/dashboards/channelsync.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        names = re.findall(r"channelsync_[a-z_]+", expr)
        assert names, expr
        for name in names:
            assert name in exported, name
