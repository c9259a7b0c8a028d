"""What one router keeps in its instance's state directory, opened together at start.

The router actor's process locks the directory first (`actors/state.py`), so nothing below
is ever shared with another instance: the journal of unacknowledged records, budget
overrides, the idempotency store and the HMAC key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from actors.budget_overrides import BudgetOverrides
from actors.config import Config, ConfigError
from actors.idempotency import STORE_FILE, IdempotencyBook, IdempotencySpec, IdempotencyStore
from actors.privacy import TextPolicy, load_key
from actors.response_cache import CACHE_FILE, CacheSpec, ResponseCache
from actors.route import RouteResult, RoutingError, RoutingTrace
from actors.state import StateLock
from actors.tracker import TrackerSpec

JOURNAL_FILE = "router-journal.jsonl"
M = TypeVar("M", bound=BaseModel)


class StoredOutcome(BaseModel):
    """A request's outcome as written to the idempotency store: a result or an error."""

    result: RouteResult | None = None
    error_class: str | None = None
    message: str | None = None
    trace: RoutingTrace | None = None


def encode_outcome(outcome: RouteResult | RoutingError) -> bytes:
    if isinstance(outcome, RoutingError):
        stored = StoredOutcome(error_class=outcome.error_class.value, message=outcome.message,
                               trace=outcome.trace)
    else:
        stored = StoredOutcome(result=outcome)
    return stored.model_dump_json().encode()


def decode_outcome(data: bytes) -> RouteResult | RoutingError:
    s = StoredOutcome.model_validate_json(data)
    if s.result is not None:
        return s.result
    assert s.error_class is not None and s.trace is not None
    return RoutingError(s.error_class, s.message or "", s.trace)


class RouterState:
    """Lock, text policy, budget overrides, idempotency book and journal path of a router.

    Raises `StateDirInUse` when another live instance holds the directory.
    """

    def __init__(self, config: Config, journal_path: str | None, keep_text: bool, *,
                 lock_wait_s: float = 10.0, owner: str = "") -> None:
        """`owner`: the router actor's id, the same across its restarts (see StateLock)."""
        self.dir = config.state_path
        self.lock = StateLock(self.dir, wait_s=lock_wait_s, owner=owner)
        tracker = TrackerSpec.from_config(config)
        self.text = TextPolicy.for_dir(tracker.store_text, self.dir)
        self.overrides = BudgetOverrides(config.budgets, self.dir)
        spec = _section(IdempotencySpec, "idempotency", config.idempotency)
        answers_on_disk = tracker.store_text == "full" and keep_text
        self.book = IdempotencyBook(
            spec, IdempotencyStore(self.dir / STORE_FILE), key=load_key(self.dir),
            kept=(RoutingError,), encode=encode_outcome if answers_on_disk else None,
            decode=decode_outcome)
        self.journal_path = Path(journal_path).expanduser() if journal_path else \
            self.dir / JOURNAL_FILE
        self.cache = open_cache(_section(CacheSpec, "cache", config.cache), self.dir,
                                answers_on_disk)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.book.close()
        self.lock.release()


def open_cache(spec: CacheSpec, state_dir: Path, on_disk: bool) -> ResponseCache | None:
    """The instance's response cache: its file (`cache.path`, default in the state
    directory), in memory only when answers may not be written to disk, None when off."""
    if not spec.enabled:
        return None
    path = Path(spec.path).expanduser() if spec.path else state_dir / CACHE_FILE
    return ResponseCache(spec, path if on_disk else None)


def _section(model: type[M], name: str, data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {name}.{'.'.join(map(str, e['loc']))}: "
                 f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                 for e in exc.errors()]
        raise ConfigError(f"invalid {name} configuration\n" + "\n".join(lines)) from None
