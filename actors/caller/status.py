"""`llm-router status`: the health of the router's actors on a running cluster, from the CLI.

`collect` asks Ray (the actor table, the nodes) and each actor (breakers, requests in
flight, budgets, stored records), each call bounded by a timeout, so a hung or restarting
actor shows as "not answering" rather than hanging the command. `render` is plain text
from the collected report, tested without Ray.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import Any

from pydantic import BaseModel, Field

from actors.shells.placement import HEAD_RESOURCE
from actors.shells.tracker import NAME as TRACKER
from actors.shells.tracker import NAMESPACE

ROUTER, SIMULATOR, PROVIDER_PREFIX = "router", "simulator", "provider:"
_CLASSES = {"RouterActor", "TrackerActor", "ProviderActor", "SimulatorActor"}
_LIVE = ("ALIVE", "RESTARTING", "PENDING_CREATION", "DEPENDENCIES_UNREADY")


class ActorRow(BaseModel):
    name: str
    state: str = Field("?", description="Ray's actor state (ALIVE, RESTARTING, DEAD, …).")
    node_id: str | None = None
    on_head: bool | None = None
    pid: int | None = None
    restarts: int | None = None
    answers: bool = Field(False, description="It answered a status call in time.")
    error: str | None = None


class ProviderRow(BaseModel):
    name: str
    model: str
    breaker: str
    inflight: int
    waiting: int
    success_rate: float
    p50_s: float | None
    samples: int
    simulated: bool
    reason: str | None = Field(None, description="Why the breaker opened, if it is open.")


class StatusReport(BaseModel):
    address: str
    dashboard: str | None = None
    nodes: int = 0
    actors: list[ActorRow] = Field(default_factory=list)
    providers: list[ProviderRow] = Field(default_factory=list)
    router_inflight: int | None = None
    budgets: list[dict[str, Any]] = Field(default_factory=list)
    records: dict[str, int] | None = Field(None, description="The tracker's stored rows.")
    expected: list[str] = Field(default_factory=list,
                                description="Providers the router routes to.")

    @property
    def healthy(self) -> bool:
        """Router and tracker present, every actor alive and answering (state "?": a
        ray:// client cannot read the actor table; answering is what counts then)."""
        names = {a.name for a in self.actors}
        return ({ROUTER, TRACKER} <= names
                and all(a.state in ("ALIVE", "?") and a.answers for a in self.actors))


def _table() -> dict[str, dict[str, Any]]:
    """GCS actor table rows of the router's actors by name (the live one when a name has
    a dead predecessor)."""
    try:
        from ray._private.state import actors
        rows = actors().values()
    except Exception:  # a ray:// client has no direct GCS access
        return {}
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("ActorClassName") not in _CLASSES or not r.get("Name"):
            continue
        prev = out.get(r["Name"])
        if prev is None or _rank(r) > _rank(prev):
            out[r["Name"]] = r
    return out


def _rank(row: dict[str, Any]) -> tuple[bool, bool, float]:
    """Which of several table rows of one name is the actor callers reach: a running one
    first (a second creation of the name can sit pending beside it), then any live one,
    then the latest."""
    return (row["State"] == "ALIVE", row["State"] in _LIVE, row.get("StartTime", 0) or 0)


def collect(timeout_s: float = 10.0) -> StatusReport:
    """The report for the Ray this process is connected to."""
    import ray

    from actors.caller.dashboard import dashboard_url

    order = {ROUTER: 0, TRACKER: 1, SIMULATOR: 2}
    names = sorted((i["name"] for i in ray.util.list_named_actors(all_namespaces=True)
                    if i.get("namespace") == NAMESPACE), key=lambda n: (order.get(n, 3), n))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    heads = {n["NodeID"] for n in nodes if HEAD_RESOURCE in (n.get("Resources") or {})}
    table = _table()
    report = StatusReport(address=ray.get_runtime_context().gcs_address,
                          dashboard=dashboard_url(), nodes=len(nodes))
    calls: dict[Any, tuple[str, str]] = {}
    for name in names:
        row = ActorRow(name=name)
        t = table.get(name)
        if t is not None:
            row.state, row.pid, row.restarts = t["State"], t.get("Pid") or None, t["NumRestarts"]
            row.node_id = (t.get("Address") or {}).get("NodeID") or None
            row.on_head = row.node_id in heads if row.node_id else None
        report.actors.append(row)
        h = ray.get_actor(name, namespace=NAMESPACE)
        if name == ROUTER:
            calls[h.inflight.remote()] = (name, "inflight")
            calls[h.provider_names.remote()] = (name, "providers")
            calls[h.budgets.remote()] = (name, "budgets")
        elif name == TRACKER:
            calls[h.reconcile.remote()] = (name, "records")
        elif name.startswith(PROVIDER_PREFIX):
            calls[h.status.remote()] = (name, "provider")
        elif name == SIMULATOR:
            calls[h.url.remote()] = (name, "url")
    ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=timeout_s)
    rows = {a.name: a for a in report.actors}
    for ref in calls:
        name, what = calls[ref]
        row = rows[name]
        if ref not in ready:
            row.answers, row.error = False, row.error or f"no answer within {timeout_s:g} s"
            continue
        try:
            value = ray.get(ref)
        except Exception as exc:
            row.answers, row.error = False, f"{type(exc).__name__}"
            continue
        row.answers = row.error is None
        _apply(report, name, what, value)
    for p in report.expected:
        if PROVIDER_PREFIX + p not in rows:
            report.actors.append(ActorRow(name=PROVIDER_PREFIX + p, state="MISSING",
                                          error="the router routes to it, but it is not running"))
    return report


def _apply(report: StatusReport, name: str, what: str, value: Any) -> None:
    if what == "providers":
        report.expected = list(value)
    elif what == "inflight":
        report.router_inflight = int(value)
    elif what == "budgets":
        report.budgets = list(value)
    elif what == "records":
        report.records = {k: int(v) for k, v in value.items()}
    elif what == "provider":
        b = value.get("breaker") or {}
        report.providers.append(ProviderRow(
            name=name.removeprefix(PROVIDER_PREFIX), model=value["model"], breaker=value["state"],
            inflight=value["inflight"], waiting=value["waiting"],
            success_rate=value["success_rate"], p50_s=value["p50_s"], samples=value["samples"],
            simulated=value["simulated"],
            reason=b.get("reason") if value["state"] != "closed" else None))


def _table_text(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


def render(r: StatusReport) -> str:
    """The report as the terminal shows it."""
    out = [f"cluster {r.address} · {r.nodes} node(s) · dashboard "
           f"{r.dashboard or 'off'} · {'healthy' if r.healthy else 'NOT HEALTHY'}"]
    if not r.actors:
        out.append(f"no router actors in namespace {NAMESPACE!r}: start them with "
                   "`llm-router serve` (or connect() in Python)")
        return "\n".join(out)
    missing = [n for n in (ROUTER, TRACKER) if n not in {a.name for a in r.actors}]
    if missing:
        out.append("missing: " + ", ".join(missing))
    detail = {ROUTER: "" if r.router_inflight is None else f"{r.router_inflight} in flight",
              TRACKER: "" if r.records is None else
              f"{r.records.get('requests', 0):,} requests, {r.records.get('attempts', 0):,} "
              "attempts recorded"}
    rows = [[a.name, a.state, "head" if a.on_head else (a.node_id or "?")[:12],
             str(a.pid or "?"), "?" if a.restarts is None else str(a.restarts),
             ("yes" if a.answers else f"NO ({a.error})"), detail.get(a.name, "")]
            for a in r.actors]
    out += ["", *_table_text(["actor", "state", "node", "pid", "restarts", "answers", ""], rows)]
    if r.providers:
        rows = [[p.name, p.breaker + (f" ({p.reason})" if p.reason else ""), str(p.inflight),
                 str(p.waiting), f"{p.success_rate:.2f}",
                 "-" if p.p50_s is None else f"{p.p50_s * 1000:.0f} ms", str(p.samples),
                 "simulated" if p.simulated else "real"] for p in r.providers]
        out += ["", *_table_text(["provider", "breaker", "inflight", "waiting", "success",
                                  "p50", "samples", "api"], rows)]
    limited = [b for b in r.budgets if b.get("limit_usd")]
    if limited:
        rows = [[str(b["scope"]), str(b["window"]), f"${b['spent_usd']:.4f}",
                 f"${b['limit_usd']:.2f}", f"{(b.get('used') or 0) * 100:.0f} %"]
                for b in limited]
        out += ["", *_table_text(["budget", "window", "spent", "limit", "used"], rows)]
    return "\n".join(out)


def _unreachable(address: str, timeout_s: float = 3.0) -> str | None:
    """Why nothing listens at an explicit host:port (None: something does, or `auto`)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def main(address: str | None, as_json: bool = False, timeout_s: float = 10.0) -> int:
    """`llm-router status`: 0 healthy, 1 something is down or not answering, 2 no cluster."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    if (why := _unreachable(address)) is not None:  # Ray itself retries for minutes
        print(f"llm-router status: no Ray cluster at {address!r}: {why}", file=sys.stderr)
        return 2
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.WARNING)
    except ray.exceptions.AuthenticationError as exc:
        from actors.caller.dashboard import token_source

        print(f"llm-router status: the cluster at {address} refused this process's token "
              f"({type(exc).__name__}); Ray reads it from {token_source()} — set "
              "RAY_AUTH_TOKEN or copy the cluster's token there", file=sys.stderr)
        return 2
    except (ConnectionError, ValueError, RuntimeError) as exc:
        hint = ""
        if address != "auto" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = ("; if the cluster uses token authentication (Ray's default for clusters "
                    "ray.init() starts), run with RAY_AUTH_MODE=token — an explicit address "
                    "gets the token only when asked to")
        print(f"llm-router status: no Ray cluster at {address!r}: {exc}{hint}", file=sys.stderr)
        return 2
    try:
        report = collect(timeout_s)
    finally:
        ray.shutdown()
    print(json.dumps(report.model_dump(mode="json"), indent=1) if as_json else render(report))
    return 0 if report.healthy else 1
