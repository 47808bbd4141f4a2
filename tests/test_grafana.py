"""deploy/grafana: the dashboard JSON parses, and every PromQL expression in it (panels and template
variables) is valid PromQL naming only metrics a real service exposes on `/metrics`, scraped from an app on
loopback, and only labels those metrics carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.rerank.identity import IdentityReranker
from leanrank.serve import create_app
from tests.conftest import make_pipeline
from tests.serve.conftest import ADMIN_KEY, settings_for
from tests.serve.live import LiveServer

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
UPSTREAM = "leanrank_upstream_request_duration_seconds"  # the service's histogram by backend
# What prometheus_client appends to a family's name in the exposition format.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
# Grafana's interval variables, replaced by a duration before parsing (they are not PromQL).
_INTERVAL = re.compile(r"\$__(rate_interval|interval|range)\b")
_WRAPPERS = (
    promql_parser.AggregateExpr,
    promql_parser.ParenExpr,
    promql_parser.UnaryExpr,
    promql_parser.SubqueryExpr,
)
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<expr>.+),\s*)?(?P<label>\w+)\)$")


def dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "leanrank.json").read_text(encoding="utf-8")))


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and the `label_values(EXPR, label)` of query variables."""
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"]["query"])
            assert match is not None, variable["query"]
            found.append(match["expr"])
    return found


def selectors(expr: str) -> Iterator[promql_parser.VectorSelector]:
    """The vector selectors of a parsed expression, however deep."""
    tree = promql_parser.parse(_INTERVAL.sub("5m", expr))
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            yield node
        elif isinstance(node, promql_parser.MatrixSelector):
            stack.append(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            stack += [node.lhs, node.rhs]
        elif isinstance(node, promql_parser.Call):
            stack += list(node.args)
        elif isinstance(node, _WRAPPERS):
            stack.append(node.expr)


def grouping_labels(expr: str) -> set[str]:
    """Labels named in `by (...)` clauses and `{label op "value"}` matchers."""
    labels: set[str] = set()
    for by in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in by.split(",") if name.strip()}
    for selector in selectors(expr):
        labels |= {m.name for m in selector.matchers.matchers if m.name != "__name__"}
    return labels


@pytest.fixture(scope="module")
def exposed(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> tuple[set[str], set[str]]:
    """(metric names, label names) that a real service's `/metrics` exposes after one metered rerank."""
    data = tmp_path_factory.mktemp("grafana")
    pipe = make_pipeline(data / "index", e5, bm25)
    server = LiveServer(create_app(settings_for(data), reranker=IdentityReranker(), pipeline=pipe))
    try:
        with server.client(ADMIN_KEY, {"X-Leanrank-Course": "demo"}) as http:
            body = {"model": "leanrank", "query": "цикл for", "documents": ["for loops", "функции"]}
            assert http.post("/v2/rerank", json=body).status_code == 200
            text = http.get("/metrics").text
    finally:
        server.close()
        pipe.close()
    names: set[str] = set()
    labels: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            names.add(sample.name)
            labels |= set(sample.labels)
    return names, labels


def test_the_dashboard_parses_and_every_panel_queries_the_chosen_prometheus() -> None:
    board = dashboard()
    assert board["uid"] == "leanrank-spend"
    queried = [p for p in board["panels"] if p["type"] != "row"]
    assert queried
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in queried)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "course"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert any(UPSTREAM in e and "backend" in e for e in expressions(board))  # latency by backend


def test_every_expression_names_only_exposed_metrics_and_labels(exposed: tuple[set[str], set[str]]) -> None:
    names, labels = exposed
    assert "leanrank_rerank_calls_total" in names  # the scrape is real: a metered call was counted
    for expr in expressions(dashboard()):
        used = {s.name for s in selectors(expr)}
        assert used, expr
        assert used <= names, f"{sorted(used - names)} in {expr}"
        assert grouping_labels(expr) <= labels | {"le", "backend"}, expr


def test_a_misspelt_metric_would_be_caught(exposed: tuple[set[str], set[str]]) -> None:
    names, _ = exposed
    assert {s.name for s in selectors("sum(rate(leanrank_rerank_cost_total[$__rate_interval]))")} - names


def test_the_provisioning_files_point_at_the_dashboard() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "leanrank.yaml").read_text("utf-8"))
    assert provider["providers"][0]["type"] == "file"
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text("utf-8"))
    assert source["datasources"][0]["type"] == "prometheus"
    scrape = yaml.safe_load((GRAFANA / "prometheus.yaml").read_text("utf-8"))["scrape_configs"][0]
    assert (scrape["metrics_path"], scrape["authorization"]["type"]) == ("/metrics", "Bearer")
