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
    for name in ("kafka", "postgres", "migrate", "worker", "dispatcher", "prometheus", "grafana"):
        assert name in services, name
    for name in ("kafka", "postgres", "worker", "dispatcher", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    # the worker leaves the ledger to the dispatcher service, which runs the same image
    assert services["worker"]["environment"]["DISPATCHER_MODE"] == "off"
    assert services["dispatcher"]["command"] == ["channelsync", "dispatcher"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["migrate"]["command"] == ["channelsync", "db", "upgrade"]
    assert (
        services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    )


def test_compose_environment_names_are_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    services = _compose()["services"]
    for name in ("migrate", "worker", "dispatcher"):
        env = services[name]["environment"]
        unknown = sorted(set(env) - fields)
        assert not unknown, f"{name}: {unknown} are not settings"


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    for name in ("worker", "dispatcher"):
        port = _compose()["services"][name]["environment"]["METRICS_PORT"]
        assert f"{name}:{port}" in targets, name


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


def test_readme_documents_every_setting() -> None:
    """Docs match the code: each environment variable the settings class reads is in the
    README's configuration section."""
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in readme]
    assert not missing, f"settings not in README.md: {missing}"
