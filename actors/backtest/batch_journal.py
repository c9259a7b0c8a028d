"""The batch journal: which bars went into which provider batch job, so a killed driver
resumes by polling what it already submitted instead of paying for it again.

    runs/<run_id>/batches.log   one JSON object a line:
      {"intent": {seq, provider, tag, at, items: [{custom_id, key, request_id, tries}]}}
                                written (to the OS) *before* the job is submitted
      {"submitted": seq, "id": "<the provider's job id>"}   once the provider answered
      {"done": seq}             every item's outcome is recorded (audit trail)

An intent without an id is what a kill between submitting and journaling leaves: the job
is found again by its tag (OpenAI metadata, Gemini displayName, Anthropic custom_id
prefix; see actors/clients/batch.py), or known never submitted. A torn last line (a kill
mid-write) is ignored, like the run journal's.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, ValidationError

from actors.backtest.recover import generation
from actors.routing.route import RouteRequest

if TYPE_CHECKING:
    from actors.backtest.plan import BarJob
    from actors.backtest.recover import Prior

#: Anthropic's custom_id rule (^[a-zA-Z0-9_-]{1,64}$), the strictest of the three vendors.
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")


class ItemRef(BaseModel):
    """One request in a batch job."""

    custom_id: str = Field(description="The item's id in the job (tag + index).")
    key: str = Field(description="The bar's result key (BarJob.key).")
    request_id: str = Field(description="The router request id it is recorded under.")
    tries: int = Field(1, ge=1, description="Batch jobs this bar has been in, this one included.")


class Intent(BaseModel):
    """A batch job about to be (or already) submitted."""

    seq: int = Field(ge=0)
    provider: str
    tag: str = Field(description="Finds the job again at the provider.")
    at: float = Field(description="Unix time before submitting.")
    items: list[ItemRef]
    batch_id: str | None = None
    done: bool = False


def run_tag(run_id: str, seq: int) -> str:
    """A job's tag: readable run id, a hash (the slug may lose characters), the job number.
    Every item's custom_id starts with it (≤ 64 characters, [a-zA-Z0-9_-])."""
    slug = _UNSAFE.sub("-", run_id)[:24].strip("-") or "run"
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"llmr-{slug}-{digest}-{seq:05d}"


def custom_id(tag: str, index: int) -> str:
    return f"{tag}-{index:05d}"


class BatchJournal:
    """One run's batches.log. Not thread-safe: the runner's event loop owns it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "batches.log"
        self._fh = None

    def read(self) -> dict[int, Intent]:
        """Every intent by seq, with its job id and done flag applied."""
        out: dict[int, Intent] = {}
        if not self.path.exists():
            return out
        for line in self.path.read_text(encoding="utf-8").split("\n")[:-1]:  # [-1]: torn
            try:
                x = json.loads(line)
                if "intent" in x:
                    it = Intent.model_validate(x["intent"])
                    out[it.seq] = it
                elif "submitted" in x and int(x["submitted"]) in out:
                    out[int(x["submitted"])].batch_id = str(x["id"])
                elif "done" in x and int(x["done"]) in out:
                    out[int(x["done"])].done = True
            except (ValueError, TypeError, KeyError, ValidationError):
                continue  # a torn line glued to the next one by a kill: skip it
        return out

    def _write(self, obj: dict[str, object]) -> None:
        if self._fh is None:
            torn = self.path.exists() and self.path.stat().st_size > 0 and \
                not self.path.read_bytes().endswith(b"\n")
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            if torn:
                self._fh.write("\n")
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()

    def intend(self, seq: int, provider: str, tag: str, items: list[ItemRef]) -> Intent:
        it = Intent(seq=seq, provider=provider, tag=tag, at=time.time(), items=items)
        self._write({"intent": it.model_dump(exclude={"batch_id", "done"})})
        return it

    def submitted(self, it: Intent, batch_id: str) -> None:
        it.batch_id = batch_id
        self._write({"submitted": it.seq, "id": batch_id})

    def finished(self, it: Intent) -> None:
        it.done = True
        self._write({"done": it.seq})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class Waiting:
    """A request in a batch job (or about to be), waiting for its outcome."""

    ref: ItemRef
    provider: str
    seq: int
    policy: str
    job: BarJob | None = None

    def request(self) -> RouteRequest:
        assert self.job is not None
        return self.job.request.model_copy(update={"policy": self.policy,
                                                   "request_id": self.ref.request_id})


def policy_of(key: str) -> str:
    return key.rsplit("|", 1)[1]


def prompt_of(key: str) -> str:
    """A result key without its policy: BarJob.key("") (every policy asks the same)."""
    return key.rsplit("|", 1)[0] + "|"


def still_open(intents: dict[int, Intent], finished: set[str],
               priors: dict[str, Prior]) -> list[tuple[Intent, list[Waiting]]]:
    """After a kill: each intent not done, with its items whose outcome is not recorded
    (not stored, not final in the audit trail, not superseded by a later request id)."""
    out = []
    seen: set[str] = set()
    for it in intents.values():
        if it.done:
            continue
        waiting = []
        for ref in it.items:
            prior = priors.get(ref.key)
            recorded = ref.key in finished or (
                prior is not None and prior.final and prior.request_id == ref.request_id)
            later = prior is not None and generation(prior.request_id) > \
                generation(ref.request_id)
            if recorded or later or ref.key in seen:
                continue
            seen.add(ref.key)
            waiting.append(Waiting(ref, it.provider, it.seq, policy_of(ref.key)))
        out.append((it, waiting))
    return out

