"""The metrics catalogue holds together: every expression of the sample Grafana dashboard names
a metric the gateway exports, every exported metric is on the dashboard and in the README's
Metrics section, and the poll wrapper counts what pickups and polls report (and their failures)."""

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.dispatch.circuit import CircuitBreaker
from gateway.metrics import Metrics, poll_outcome
from gateway.monitoring.cluster import ClusterSnapshot, LastRun, families
from gateway.monitoring.polls import metered

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "agency-gateway.json"
README = (ROOT / "README.md").read_text(encoding="utf-8")
METRIC_NAME = re.compile(r"\bgateway_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def full_snapshot() -> ClusterSnapshot:
    """A snapshot with every optional family present."""
    return ClusterSnapshot(
        outbox={"pending": 1},
        oldest_pending_age=5.0,
        oldest_due_age=1.0,
        breaks={"missing_ack": 1},
        notices={"queued": 1},
        sla_breaches={("AGY", "missing_ack"): 1},
        last_seen={"AGY": 1.0},
        disabled={"AGY": False},
        last_run=LastRun("completed", 2.0, 3.0),
    )


def exported() -> dict[str, str]:
    """Every metric family the gateway exports (name → type)."""
    metrics = Metrics(channels={"AGY": "webhook"})
    metrics.watch_circuits(lambda: {"AGY": CircuitBreaker(1, 1.0)})
    found = {f.name: f.type for f in metrics.registry.collect()}
    found.update({f.name: f.type for f in families(full_snapshot())})
    return found


def sample_names(catalogue: Mapping[str, str]) -> set[str]:
    return {name + suffix for name, kind in catalogue.items() for suffix in SUFFIXES[kind]}


def expressions(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every templating query."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield f"variable {variable['name']}", query["query"]


def test_every_dashboard_expression_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names = sample_names(exported())
    unknown = [
        (where, name)
        for where, expr in expressions(dashboard)
        for name in METRIC_NAME.findall(expr)
        if name not in names
    ]
    assert unknown == []
    assert sum(1 for _ in expressions(dashboard)) > 20


def test_every_exported_metric_is_on_the_dashboard_and_in_the_readme() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    drawn = {name for _, expr in expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    section = README.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    catalogue = exported()
    off_dashboard = [
        name for name, kind in catalogue.items() if not sample_names({name: kind}) & drawn
    ]
    assert off_dashboard == []
    listed = [
        name
        for name, kind in catalogue.items()
        if f"`{name}{'_total' if kind == 'counter' else ''}`" in section
    ]
    assert sorted(set(catalogue) - set(listed)) == []


def test_every_panel_reads_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    uid = "${" + variable["name"] + "}"
    drawing = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert drawing and all(p["datasource"]["uid"] == uid for p in drawing)
    assert all(t["datasource"]["uid"] == uid for p in drawing for t in p["targets"])


class Poller:
    """A pickup that reports the counts it is given, or raises."""

    name = "sftp-pickup:AGY"
    interval_seconds = 30.0
    agency_id = "AGY"

    def __init__(self, *results: Mapping[str, int] | Exception) -> None:
        self._results = list(results)

    async def poll_once(self) -> Mapping[str, int]:
        result = self._results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """One sample of ``metrics``' exposition, parsed back."""
    text = generate_latest(metrics.registry).decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return found.get((name, tuple(sorted(labels.items()))))


async def test_a_metered_poller_counts_results_runs_and_failures_by_agency() -> None:
    metrics = Metrics(channels={"AGY": "sftp"})
    now = [1000.0]
    poller = metered(
        Poller({"applied": 3, "duplicate": 1}, {"errors": 1}, RuntimeError("boom"), {"applied": 2}),
        metrics,
        source="sftp_pickup",
        clock=lambda: now[0],
    )
    assert (poller.name, poller.interval_seconds) == ("sftp-pickup:AGY", 30.0)
    assert await poller.poll_once() == {"applied": 3, "duplicate": 1}
    now[0] = 2000.0
    await poller.poll_once()
    now[0] = 3000.0
    with pytest.raises(RuntimeError):
        await poller.poll_once()
    at = {"source": "sftp_pickup", "agency": "AGY"}

    def result(name: str) -> float | None:
        return sample(metrics, "gateway_poll_results_total", **at, result=name)

    assert (result("applied"), result("duplicate"), result("errors")) == (3, 1, 1)
    runs = {o: sample(metrics, "gateway_polls_total", **at, outcome=o) for o in ("ok", "error")}
    assert runs == {"ok": 1, "error": 2}
    # The last good poll is the first one: the second reported an error, the third raised.
    assert sample(metrics, "gateway_poll_last_success_timestamp_seconds", **at) == 1000.0
    now[0] = 4000.0
    await poller.poll_once()
    assert result("applied") == 5
    assert sample(metrics, "gateway_poll_last_success_timestamp_seconds", **at) == 4000.0


def test_every_metric_the_readme_names_is_exported() -> None:
    """Outside the Metrics section too (the deployment section says what to watch)."""
    named = set(re.findall(r"`(gateway_[a-z0-9_]+)[`{]", README))
    assert len(named) > 20
    catalogue = exported()
    assert sorted(named - sample_names(catalogue) - set(catalogue)) == []


@pytest.mark.parametrize(
    ("results", "outcome"),
    [
        ({}, "ok"),
        ({"applied": 2, "duplicate": 1}, "ok"),
        ({"applied": 2, "errors": 0}, "ok"),
        ({"applied": 2, "errors": 1}, "error"),
        ({"refused": 1}, "error"),
        ({"skipped_disabled": 1}, "skipped"),
    ],
)
def test_a_poll_outcome_is_an_error_only_when_the_pass_reported_one(
    results: dict[str, int], outcome: str
) -> None:
    assert poll_outcome(results) == outcome
