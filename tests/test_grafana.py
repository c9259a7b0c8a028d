"""configs/grafana/llm-router.json names only metrics the code exports, with their labels,
in queries that parse as PromQL; and every exported metric has a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser as pq
import pytest

from actors.shells.metrics import METRICS, PROMETHEUS_PREFIX

DASHBOARD = Path(__file__).resolve().parent.parent / "configs" / "grafana" / "llm-router.json"
#: Grafana's variables, replaced by something PromQL accepts before parsing.
GRAFANA_VARS = {"$__rate_interval": "5m", "$provider": ".*"}
BY_PROM_NAME = {n: m for m in METRICS for n in m.prometheus_names()}


def queries(board: dict) -> list[str]:
    out = []
    for panel in board["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    for var in board["templating"]["list"]:
        if var.get("type") == "query":
            out.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return out


def walk(node, selectors: list, groupings: list) -> None:
    """Every vector selector (name, labels matched) and aggregation grouping in a query."""
    if isinstance(node, pq.VectorSelector):
        selectors.append((node.name, {m.name for m in node.matchers.matchers}))
        return
    if isinstance(node, pq.AggregateExpr):
        inner: list = []
        walk(node.expr, inner, groupings)
        selectors += inner
        if node.modifier is not None:
            groupings.append((set(node.modifier.labels), {s[0] for s in inner}))
        return
    for attr in ("expr", "lhs", "rhs", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None:
            walk(child, selectors, groupings)
    for arg in getattr(node, "args", None) or []:
        walk(arg, selectors, groupings)


def parsed(expr: str):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    label_values = re.fullmatch(r"label_values\((\w+), (\w+)\)", expr)
    if label_values:  # Grafana's own function: its metric and label
        return pq.parse(f"count by ({label_values[2]}) ({label_values[1]})")
    return pq.parse(expr)


@pytest.fixture(scope="module")
def board() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_query_parses_and_names_exported_metrics_and_their_labels(board):
    seen = set()
    for expr in queries(board):
        selectors: list = []
        groupings: list = []
        walk(parsed(expr), selectors, groupings)
        assert selectors, expr
        for name, labels in selectors:
            assert name in BY_PROM_NAME, f"{name} is not exported by actors/shells/metrics.py ({expr})"
            m = BY_PROM_NAME[name]
            extra = {"le"} if name.endswith("_bucket") else set()
            assert labels <= set(m.tags) | extra, f"{name} has no label {labels - set(m.tags)}"
            seen.add(m.key)
        for by, names in groupings:
            allowed = set().union(*(set(BY_PROM_NAME[n].tags) for n in names)) | {"le"}
            assert by <= allowed, f"grouping by {by - allowed} in {expr}"
    assert seen == {m.key for m in METRICS}, f"no panel for {({m.key for m in METRICS} - seen)}"


def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource(board):
    assert board["uid"] == "llm-router" and board["schemaVersion"] >= 30
    ds = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert ds and ds[0]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


def test_the_walker_sees_what_it_checks():
    sel: list = []
    grp: list = []
    walk(parsed('sum by (user) (rate(ray_llm_router_requests_total{policy="x"}[5m]))'), sel, grp)
    assert sel == [("ray_llm_router_requests_total", {"policy"})]
    assert grp == [({"user"}, {"ray_llm_router_requests_total"})]
    assert PROMETHEUS_PREFIX == "ray_"
