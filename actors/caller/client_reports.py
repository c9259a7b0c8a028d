"""The client's reports and state: status, costs, budgets, feedback, shutdown.

A part of `RouterClient` (actors/caller/client.py), kept apart from the request path.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import ray

from actors.core.feedback import FeedbackAck, FeedbackItem
from actors.shells.ray_calls import aget, get
from actors.shells.router_actor import NAMESPACE, provider_actor_name
from actors.shells.system import Handles, stop_system
from actors.stores import spend
from actors.stores.spend import TimeLike


class Reports:
    """State and reports of the running system, read from the router and the tracker."""

    _h: Handles

    def status(self) -> pd.DataFrame:
        """Breaker state, rolling metrics and limits per provider."""
        refs = {n: h.status.remote() for n, h in self._h.providers.items()}
        rows = []
        for name, ref in refs.items():
            s = ray.get(ref)
            rows.append({
                "provider": name, "model": s["model"], "state": s["state"],
                "success_rate": s["success_rate"], "p50_s": s["p50_s"], "p95_s": s["p95_s"],
                "mean_confidence": s["mean_confidence"], "samples": s["samples"],
                "inflight": s["inflight"], "waiting": s["waiting"], "rpm": s["rpm"],
                "tpm": s["tpm"], "max_concurrency": s["max_concurrency"],
                "simulated": s["simulated"], "transitions": s["breaker"].get("transitions"),
            })
        return pd.DataFrame(rows).set_index("provider")

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every record routed so far is in the audit trail (reports read the
        trail as it is and never wait: call this first to see your latest requests).
        Returns how many records were still unacknowledged after 30 s (0 normally)."""
        return ray.get(self._h.router.flush.remote(), timeout=timeout)

    def costs(self, by: str = "hour", since: TimeLike = None,
              until: TimeLike = None, group_by: str = "provider") -> pd.DataFrame:
        """Cost by (provider, model, simulated) per UTC hour or day — tokens, requests,
        attempts, USD — over [since, until) (unix seconds, ISO 8601 or datetimes; default
        the last 2 days by hour, 31 days by day), aggregated in SQL. `group_by="user"`:
        by (user, simulated) instead — each desk or strategy's own spend."""
        spend.window(by, since, until)  # a bad argument fails here, naming itself
        spend.group_columns(group_by)
        return get(self._h.tracker.costs.remote(by, since, until, group_by))

    def performance(self, by_context: bool = False) -> pd.DataFrame:
        return ray.get(self._h.tracker.performance.remote(by_context))

    def cost_per_token(self, since: TimeLike = None, until: TimeLike = None) -> pd.DataFrame:
        """Realized USD per input/output token by model over a window (default: 31 days)."""
        return get(self._h.tracker.cost_per_token.remote(since, until))

    def set_budgets(self, budgets: dict[str, Any]) -> pd.DataFrame:
        """Change budget limits at run time by merging, e.g. {"hourly_usd": 5} keeps every
        other limit; null removes one ({"per_provider": {"claude": None}}). Spend so far
        counts against the new limits; the change is kept in this instance's state
        directory and re-applied (and reported) at every start. Requests already in flight
        keep their reservations: a limit lowered below spent + reserved cannot stop them
        (the table returned is the ledger as the new limit took effect — check it)."""
        return pd.DataFrame(get(self._h.router.set_budgets.remote(budgets)))

    def reset_budgets(self) -> pd.DataFrame:
        """Drop every run-time budget change: back to the configured limits."""
        return pd.DataFrame(get(self._h.router.set_budgets.remote(None)))

    def budgets(self) -> pd.DataFrame:
        """Spend vs every limit in force, with `source`: config, or a run-time override."""
        return pd.DataFrame(get(self._h.router.budgets.remote()))

    def describe(self) -> dict[str, Any]:
        """This instance: state directory, simulated or real, budgets in force and why."""
        return get(self._h.router.describe.remote())

    def audit(self, request_id: str) -> list[dict[str, Any]]:
        self.flush()
        return get(self._h.tracker.audit.remote(request_id))

    def active(self, request_ids: list[str]) -> set[str]:
        """Which of these request ids the router is working on right now."""
        return set(get(self._h.router.active.remote(list(request_ids))))

    def feedback(self, request_id: str, score: float) -> None:
        """Attach a realized outcome (0..1, e.g. 1.0 = the trade call was right). The router
        learns from it at once; it reaches the audit trail with the request's records."""
        get(self._h.router.feedback.remote(request_id, float(score)))

    async def afeedback(self, request_id: str, score: float) -> None:
        """The async twin of `feedback`."""
        await aget(self._h.router.feedback.remote(request_id, float(score)))

    async def afeedback_many(self, items: list[FeedbackItem]) -> list[FeedbackAck]:
        """Many outcomes in one router call (what a backtest sends): each acknowledged on
        its own — recorded, unknown (not recorded yet: ask again), invalid or failed."""
        return await aget(self._h.router.feedback_many.remote(items))

    def estimates(self) -> pd.DataFrame:
        """What the router has learned per provider and context: outcome score (posterior
        mean), evidence behind it, success rate, expected output tokens."""
        rows = ray.get(self._h.router.estimates.remote())
        return pd.DataFrame(rows).set_index(["provider", "context"]) if rows else pd.DataFrame()

    def quality_prices(self) -> pd.DataFrame:
        """cost-aware's learned price of quality (USD per unit outcome score) per target."""
        return pd.DataFrame(ray.get(self._h.router.quality_prices.remote()))

    def reset(self, provider: str) -> dict[str, Any]:
        """Close a provider's breaker by hand (e.g. after fixing its API key)."""
        return get(self._h.router.reset.remote(provider))

    def provider(self, name: str) -> Any:
        return ray.get_actor(provider_actor_name(name), namespace=NAMESPACE)

    @property
    def simulator(self) -> Any | None:
        return self._h.simulator

    @property
    def handles(self) -> Handles:
        return self._h

    def shutdown(self, *, stop_ray: bool = True, flush_timeout: float | None = None) -> None:
        """Kill the router's actors (the audit DB stays) and, by default, disconnect.

        flush_timeout: how long to wait for the tracker to take the last records (what it
        does not get stays in the router's journal for the next start).
        """
        try:
            self.flush(flush_timeout)
        except Exception:  # best effort: the tracker may already be gone
            pass
        stop_system()
        if stop_ray:
            ray.shutdown()


