"""What one router keeps, opened together at start: in its instance's state directory on
one machine, in the cluster's PostgreSQL database with `tracker.db_url`.

The router actor's process locks the directory first (`actors/stores/state.py`), so nothing below
is ever shared with another instance: the journal of unacknowledged records, budget
overrides, the idempotency store and the HMAC key. With PostgreSQL they live in the
database instead (`actors/stores/pg_state.py`, `actors/stores/pg_journal.py`), where a router restarted
on any node finds them. There the router first claims the deployment's router lease
(`actors/stores/lease.py`): a second live system on the same database and deployment is refused,
and every write below carries the lease's epoch, so a replaced router cannot clobber its
successor's state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from actors.config import Config
from actors.core.budget_overrides import BudgetOverrides
from actors.core.privacy import TextPolicy, load_key
from actors.routing.route import RouteResult, RoutingError, RoutingTrace
from actors.shells.tracker import TrackerSpec, claim_lease
from actors.stores.idempotency import STORE_FILE, IdempotencyBook, IdempotencySpec, IdempotencyStore
from actors.stores.journal import Journal
from actors.stores.lease import Fenced, Lease, Role
from actors.stores.pg import PgSession
from actors.stores.pg_journal import PgJournal
from actors.stores.pg_state import BUDGET_OVERRIDES, PgIdempotencyStore, PgKeyValue
from actors.stores.response_cache import CACHE_FILE, CacheSpec, ResponseCache
from actors.stores.state import StateLock

JOURNAL_FILE = "router-journal.jsonl"


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
                 lock_wait_s: float = 10.0, owner: str = "",
                 on_fenced: Callable[[Fenced], None] | None = None) -> None:
        """`owner`: the router actor's id, the same across its restarts (see StateLock and
        actors/stores/lease.py); `on_fenced`: told once another router took the state over."""
        self.dir = config.state_path
        self.lock = StateLock(self.dir, wait_s=lock_wait_s, owner=owner)
        tracker = TrackerSpec.from_config(config)
        spec: IdempotencySpec = config.idempotency
        configured = config.budgets.model_dump(exclude_unset=True)  # what the overrides patch
        self.db = tracker.connection() if tracker.db_url is not None else None
        self.lease: Lease | None = None
        self.on_fenced = on_fenced
        store: IdempotencyStore | PgIdempotencyStore
        if self.db is not None:
            # The deployment's router lease first: nothing is read or written before it.
            try:
                self.lease = claim_lease(PgSession(self.db), Role.ROUTER, tracker, owner,
                                         self.db.where, True, on_fenced)
            except BaseException:
                self.lock.release()
                raise
            fence = self.lease.fence
            self.kv: PgKeyValue | None = PgKeyValue(self.db, fence=fence)
            key = self.kv.hmac_key()
            self.overrides = BudgetOverrides(configured, self.dir,
                                             saved=self.kv.slot(BUDGET_OVERRIDES))
            store = PgIdempotencyStore(self.db, fence=fence)
        else:
            self.kv, key = None, load_key(self.dir)
            self.overrides = BudgetOverrides(configured, self.dir)
            store = IdempotencyStore(self.dir / STORE_FILE)
        self.text = TextPolicy(tracker.store_text, key if tracker.store_text == "hash" else None)
        answers_on_disk = tracker.store_text == "full" and keep_text
        self.book = IdempotencyBook(
            spec, store, key=key, kept=(RoutingError,),
            encode=encode_outcome if answers_on_disk else None, decode=decode_outcome)
        self.journal_path = Path(journal_path).expanduser() if journal_path else \
            self.dir / JOURNAL_FILE
        self.cache = open_cache(config.cache, self.dir,
                                answers_on_disk)

    def open_journal(self) -> Journal | PgJournal:
        """The journal of unacknowledged records: a table in the cluster's database with
        PostgreSQL (it must outlive the node), else a file in the state directory."""
        if self.db is None:
            return Journal(self.journal_path)
        return PgJournal(self.db, self.lease.fence if self.lease else None, self.on_fenced)

    def release_lease(self) -> None:
        """Before a deliberate stop: a successor of another owner need not wait for it."""
        if self.lease is not None:
            self.lease.release()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.book.close()
        if self.kv is not None:
            self.kv.close()
        self.release_lease()
        if self.lease is not None:
            self.lease.db.close()
        self.lock.release()


def open_cache(spec: CacheSpec, state_dir: Path, on_disk: bool) -> ResponseCache | None:
    """The instance's response cache: its file (`cache.path`, default in the state
    directory), in memory only when answers may not be written to disk, None when off."""
    if not spec.enabled:
        return None
    path = Path(spec.path).expanduser() if spec.path else state_dir / CACHE_FILE
    return ResponseCache(spec, path if on_disk else None)
