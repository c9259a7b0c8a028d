"""Run-time budget changes: merged into the configured budgets, kept, and always explained.

A change is a JSON merge patch (RFC 7396) over the limits in force: keys it names are set,
keys it sets to null are removed, everything else stays — so `{"hourly_usd": 5}` keeps every
per-provider cap, and `{"per_provider": {"claude": null}}` drops claude's. Changes
accumulate in `budgets-override.json` in the instance's state directory, each limit with the
time it was set, and are re-applied over the config at every start; `sources()` says for
each limit whether it comes from the config or from a run-time change (and when), which the
router prints at start-up. `reset()` returns to the config. With PostgreSQL
(`tracker.db_url`) the same text is kept in the database instead (`actors/stores/pg_state.py`), so
a router restarted on another node re-applies it too.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from actors.core.budget import WINDOWS, BudgetSpec
from actors.stores.state import write_private

log = logging.getLogger(__name__)
FILE = "budgets-override.json"
LIMIT_KEYS = tuple(f"{w}_usd" for w in WINDOWS)  # hourly_usd, daily_usd


class Saved(Protocol):
    """Where the overrides' text is kept: a file, or a row in the cluster's database."""

    where: str

    def read(self) -> tuple[str, float] | None:
        """The text and when it was written, or None when nothing was saved."""

    def write(self, text: str) -> None: ...

    def delete(self) -> None: ...


class SavedFile:
    """`budgets-override.json` in the instance's state directory, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def read(self) -> tuple[str, float] | None:
        try:
            return self.path.read_text(), self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def write(self, text: str) -> None:
        write_private(self.path, text)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: apply `patch` to `target` (null removes a key)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _accumulate(acc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Fold a new patch into the accumulated one, keeping nulls (they remove config keys)."""
    out = dict(acc)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _accumulate(out[key], value)
        else:
            out[key] = value
    return out


def _leaves(patch: dict[str, Any], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for key, value in patch.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += _leaves(value, path + ".")
        else:
            paths.append(path)
    return paths


@dataclass(frozen=True)
class Source:
    """Where one limit in force comes from."""

    scope: str  # "*" or a provider name
    key: str  # hourly_usd, daily_usd or soft_limit
    value: float | None  # None: removed by a run-time change
    origin: str  # "config", "default" or "override"
    set_at: float | None = None

    def describe(self) -> str:
        who = "global" if self.scope == "*" else self.scope
        what = f"{who} {self.key}"
        value = "removed" if self.value is None else (
            f"{self.value:g}" if self.key == "soft_limit" else f"${self.value:,.2f}")
        if self.origin == "override":
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.set_at or 0))
            return f"{what} {value} (run-time override set {when})"
        return f"{what} {value} ({self.origin})"


class BudgetOverrides:
    """The configured budgets plus the run-time changes made to them."""

    def __init__(self, configured: dict[str, Any], state_dir: str | Path,
                 clock: Any = time.time, saved: Saved | None = None) -> None:
        """`saved`: where the changes are kept (default: the file in `state_dir`)."""
        self.configured = dict(configured)
        self.path = Path(state_dir) / FILE
        self.saved: Saved = saved or SavedFile(self.path)
        self._clock = clock
        self.patch: dict[str, Any] = {}
        self.set_at: dict[str, float] = {}
        self._load()
        self.spec = self._effective(self.patch)

    def _load(self) -> None:
        try:
            found = self.saved.read()
            if found is None:
                return
            data, mtime = json.loads(found[0]), found[1]
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable budget override %s: %s", self.saved.where, exc)
            return
        if isinstance(data, dict) and data.get("version") == 2:
            self.patch, self.set_at = data.get("patch") or {}, data.get("set_at") or {}
        elif isinstance(data, dict):  # an earlier version's file: a whole replacement spec
            self.patch = {k: None for k in self.configured} | data
            self.set_at = dict.fromkeys(_leaves(self.patch), mtime)
        try:
            self._effective(self.patch)
        except ValueError as exc:
            log.warning("ignoring invalid budget override %s: %s", self.saved.where, exc)
            self.patch, self.set_at = {}, {}

    def _effective(self, patch: dict[str, Any]) -> BudgetSpec:
        return BudgetSpec.model_validate(merge_patch(self.configured, patch))

    def apply(self, patch: dict[str, Any]) -> BudgetSpec:
        """Merge a change in (raises ValidationError naming the bad key); saved at once."""
        if not isinstance(patch, dict):
            raise ValueError("a budget change is a mapping like {\"hourly_usd\": 5}")
        acc = _accumulate(self.patch, patch)
        spec = self._effective(acc)
        now = self._clock()
        self.patch, self.spec = acc, spec
        self.set_at.update(dict.fromkeys(_leaves(patch), now))
        self.saved.write(json.dumps({"version": 2, "patch": self.patch, "set_at": self.set_at},
                                    indent=1))
        return spec

    def reset(self) -> BudgetSpec:
        """Back to the configured budgets."""
        self.patch, self.set_at = {}, {}
        self.saved.delete()
        self.spec = self._effective({})
        return self.spec

    def _when(self, path: str) -> float | None:
        """When the change that decides `path` was made (its own, or a parent's removal)."""
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            t = self.set_at.get(".".join(parts[:i]))
            if t is not None:
                return t
        return None

    def sources(self) -> list[Source]:
        """Every limit in force (and every configured one a change removed), with its origin."""
        spec, out = self.spec, []
        scopes: list[tuple[str, str, Any]] = [("*", "", spec)]
        scopes += [(name, f"per_provider.{name}.", lim) for name, lim in spec.per_provider.items()]
        removed = [(n, f"per_provider.{n}.") for n in self.configured.get("per_provider") or {}
                   if n not in spec.per_provider]
        for scope, prefix, limits in scopes:
            for key in LIMIT_KEYS:
                value = getattr(limits, key)
                out += self._source(scope, prefix + key, key, value)
        for scope, prefix in removed:
            out += [Source(scope, key, None, "override", self._when(prefix + key))
                    for key in LIMIT_KEYS if self._configured(prefix + key) is not None]
        soft = self._source("*", "soft_limit", "soft_limit", spec.soft_limit)[0]
        if soft.origin == "config" and "soft_limit" not in self.configured:
            soft = Source("*", "soft_limit", spec.soft_limit, "default")
        return [*out, soft]

    def _configured(self, path: str) -> Any:
        node: Any = self.configured
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def _source(self, scope: str, path: str, key: str, value: float | None) -> list[Source]:
        when = self._when(path)
        if value is None and self._configured(path) is None:
            return []  # neither configured nor set: nothing to say
        if when is not None:
            return [Source(scope, key, value, "override", when)]
        return [Source(scope, key, value, "config")]

    def summary(self) -> str:
        """One line for start-up logs: the limits in force and where each came from."""
        limits = [s for s in self.sources() if s.key != "soft_limit"]
        if not limits:
            return "budgets: no spend limits in force"
        return "budgets in force: " + "; ".join(s.describe() for s in limits)
