"""A simulated batch job and what every vendor's batch API shares: its settings, its
deterministic item outcomes, the replies and the counts (actors/simulator/batches.py
serves the three wire formats over these)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actors.simulator import wire
from actors.simulator.engine import Reply


class BatchSettings(BaseModel):
    """How simulated batch jobs behave (`PUT /_sim/batches`)."""

    model_config = ConfigDict(extra="forbid")

    delay_s: float = Field(1.0, ge=0, description="Seconds from creation to the end of a job.")
    item_failure: float = Field(0.0, ge=0, le=1, description="Share of items that fail.")
    item_expired: float = Field(0.0, ge=0, le=1, description="Share of items that expire.")
    page_size: int | None = Field(None, ge=1, description=(
        "Most jobs one listing page returns whatever the request's limit (unset: the "
        "vendors' own maxima), so tests page through a listing of a few jobs."))


@dataclass
class Job:
    id: str
    api: wire.Api
    model: str | None  # Gemini: from the path; the others: per item
    items: list[tuple[str, bytes]]  # (custom_id, request body)
    created: float
    ready: float
    metadata: dict[str, str] = field(default_factory=dict)
    display_name: str = ""
    input_file_id: str = ""
    cancelled: float | None = None
    ended: float | None = None
    results: list[tuple[str, str, int, Any]] = field(default_factory=list)
    # (custom_id, outcome: succeeded / errored / expired / canceled, status, body or error)


def share(job: str, cid: str, salt: str) -> float:
    return zlib.crc32(f"{salt}:{job}:{cid}".encode()) / 2**32


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status, json.dumps(obj).encode())


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"error": {"message": message, "type": "invalid_request_error"}})


class BatchStats(BaseModel):
    """`GET /_sim/batches/stats`: what the simulator received as batch jobs (ground truth
    for "nothing submitted twice")."""

    jobs: int = Field(0, description="Batch jobs created.")
    items: int = Field(0, description="Items in them.")
    distinct_items: int = Field(0, description="Distinct (model, request body) among them.")
    by_api: dict[str, int] = Field(default_factory=dict, description="Items per wire format.")
