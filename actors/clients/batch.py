"""The providers' batch APIs (PROVIDERS.md "Batch APIs"): submit many completions as one job,
find jobs again by a tag, poll them, read their results — about half the synchronous price.

Each item's body is what the provider's synchronous wire client would send (`build`), and
each item's answer is parsed and classified by that same client (`parse`): a batch result
is a `Result` or a `ProviderError` exactly like a synchronous one, and its cost is the
synchronous price × the provider's `batch_discount`.

Tags (to find a job after the driver that submitted it died): OpenAI batch `metadata`
{"tag": …}; Gemini the job's `displayName`; Anthropic batches carry no metadata, so the
tag is the prefix of every item's `custom_id` and `find` can only recognise ended jobs (it
reads their first result line) — the caller's journal of submitted job ids is what covers
the rest.

Finding walks the provider's whole listing, page after page (an account holds other
jobs too): OpenAI `after=<last_id>` and Anthropic `after_id=<last_id>` while `has_more`,
Gemini `pageToken=<nextPageToken>`. OpenAI and Anthropic list newest first, so the walk
stops at the first job created before the caller's `since` (less `SINCE_MARGIN_S`);
Gemini documents no order, so its walk goes to the end. Past `MAX_LIST_PAGES` pages it
raises `BatchListingTooLong` rather than answer "not found" without having looked.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from actors.clients.base import Completion, Result
from actors.clients.registry import CLIENTS
from actors.clients.wire import WireClient
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError

#: Jobs asked for per listing page (OpenAI's maximum; Anthropic and Gemini allow more).
PAGE_SIZE = 100
#: Listing pages one walk reads at most: 10,000 jobs (created since `since` where the
#: provider lists newest first). Past it, `BatchListingTooLong`.
MAX_LIST_PAGES = 100
#: The provider's clock against ours: a job created up to this long before `since` (our
#: clock, just before submitting) may still be the one submitted then.
SINCE_MARGIN_S = 60.0


class BatchListingTooLong(RuntimeError):
    """A provider's listing went on past the page cap: the job looked for may be further
    down, so "not found" (and submitting it again, paying twice) cannot be answered."""


def stamp(iso: str | None) -> float:
    """An RFC 3339 time as unix time; a missing one as +inf (never provably too old)."""
    return datetime.fromisoformat(iso).timestamp() if iso else math.inf


class BatchJob(BaseModel):
    """A submitted job as the provider reports it."""

    id: str = Field(description="The provider's job id (batch_…, msgbatch_…, batches/…).")
    provider: str
    state: Literal["in_progress", "ended"]
    total: int = Field(0, ge=0)
    succeeded: int = Field(0, ge=0)
    failed: int = Field(0, ge=0, description="Errored, expired or cancelled items.")
    tag: str = ""


class ItemOutcome(BaseModel):
    """One item's result: an answer (cost at the batch price) or a classified error."""

    custom_id: str
    result: Result | None = None
    error_class: ErrorClass | None = None
    error: str | None = None


def _failed(cid: str, cls: ErrorClass, msg: str) -> ItemOutcome:
    return ItemOutcome(custom_id=cid, error_class=cls, error=msg[:500])


class BatchApi(ABC):
    """One provider's batch endpoint; one instance per provider, used from one event loop."""

    def __init__(self, spec: ProviderSpec, api_key: str, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if spec.batch_discount is None:
            raise ValueError(f"provider {spec.name!r}: no batch API configured "
                             "(batch_discount unset)")
        if base_url is not None:
            spec = spec.model_copy(update={"base_url": base_url.rstrip("/")})
        self.spec = spec
        self.wire: type[WireClient] = CLIENTS[spec.api]
        self._key = api_key
        self.http = httpx.AsyncClient(transport=transport, timeout=60.0, trust_env=False)

    def _item(self, completion: Completion) -> tuple[str, dict[str, str], dict[str, Any]]:
        return self.wire.build(self.spec, completion, self._key)

    def _headers(self) -> dict[str, str]:
        return self._item(Completion(messages=[{"role": "user", "content": "."}]))[1]

    async def _call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        r = await self.http.request(method, url, headers={**self._headers(),
                                                          **kw.pop("headers", {})}, **kw)
        if r.status_code >= 400:
            raise self.wire.error(self.spec, r.status_code, r.headers, r.content)
        return r

    def outcome(self, cid: str, status: int, body: Any) -> ItemOutcome:
        """An item's answer parsed and classified like a synchronous one, at the batch price."""
        try:
            res = self.wire.parse(self.spec, status, {}, json.dumps(body).encode(), 0.0)
        except ProviderError as exc:
            return _failed(cid, exc.error_class, exc.message)
        discount = self.spec.batch_discount or 1.0
        return ItemOutcome(custom_id=cid, result=res.model_copy(
            update={"cost_usd": res.cost_usd * discount}))

    @abstractmethod
    async def submit(self, items: list[tuple[str, Completion]], tag: str) -> BatchJob: ...

    @abstractmethod
    async def poll(self, job_id: str) -> BatchJob: ...

    @abstractmethod
    async def results(self, job_id: str) -> list[ItemOutcome]: ...

    @abstractmethod
    def _job(self, b: dict[str, Any]) -> BatchJob:
        """A job as the provider's JSON describes it."""

    async def find(self, tag: str, since: float | None = None) -> list[BatchJob]:
        """The jobs tagged `tag` created at or after `since` (unix time, our clock; None:
        any time), from the whole listing."""
        return [j for j in [self._job(b) async for b in self.listing(since)] if j.tag == tag]

    async def unresolved(self, since: float) -> int:
        """Jobs created at or after `since` (unix time) that `find` cannot see yet: one of
        them may carry a tag being looked for. 0 where `find` sees running jobs too."""
        return 0

    # -- the listing ---------------------------------------------------------------------

    #: Whether the provider documents its listing as newest first (the walk may stop early).
    newest_first = True
    max_pages = MAX_LIST_PAGES

    @abstractmethod
    def _page(self, cursor: str | None) -> tuple[str, dict[str, Any]]:
        """The URL and query of the listing page after `cursor` (None: the first)."""

    def _listed(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """A listing page's jobs and the cursor of the next page (None: the last page).
        OpenAI's and Anthropic's shape: `data`, `has_more`, `last_id`."""
        data = body["data"]
        more = body.get("has_more") and data
        return data, (body.get("last_id") or data[-1]["id"]) if more else None

    @abstractmethod
    def _created(self, job: dict[str, Any]) -> float:
        """When a listed job was created (unix time, the provider's clock)."""

    async def listing(self, since: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every listed job (the provider's JSON) that may have been created at or after
        `since` (None: all), following the pages; `BatchListingTooLong` past the cap."""
        floor = -math.inf if since is None else since - SINCE_MARGIN_S
        cursor: str | None = None
        for _ in range(self.max_pages):
            url, params = self._page(cursor)
            jobs, cursor = self._listed((await self._call("GET", url, params=params)).json())
            for job in jobs:
                if self._created(job) >= floor:
                    yield job
                elif self.newest_first:
                    return  # the rest is older still
            if cursor is None:
                return
        after = "" if since is None else (
            f" created since {datetime.fromtimestamp(floor, UTC).isoformat(timespec='seconds')}")
        raise BatchListingTooLong(
            f"provider {self.spec.name!r}: its batch jobs{after} fill more than "
            f"{self.max_pages} listing pages of up to {PAGE_SIZE}; stopped rather than miss "
            "a job already submitted (and pay for it twice). Cancel or delete finished jobs "
            "at the provider, or raise actors.clients.batch.MAX_LIST_PAGES.")

    async def aclose(self) -> None:
        await self.http.aclose()


class OpenAIBatch(BatchApi):
    def _job(self, b: dict[str, Any]) -> BatchJob:
        c = b.get("request_counts") or {}
        ended = b["status"] in ("completed", "failed", "expired", "cancelled")
        return BatchJob(id=b["id"], provider=self.spec.name,
                        state="ended" if ended else "in_progress", total=c.get("total", 0),
                        succeeded=c.get("completed", 0), failed=c.get("failed", 0),
                        tag=(b.get("metadata") or {}).get("tag", ""))

    async def submit(self, items: list[tuple[str, Completion]], tag: str) -> BatchJob:
        base = self.spec.base_url
        lines = []
        for cid, c in items:
            url, _, body = self._item(c)
            lines.append(json.dumps({"custom_id": cid, "method": "POST",
                                     "url": "/v1" + url.removeprefix(base), "body": body}))
        headers = {k: v for k, v in self._headers().items() if k != "content-type"}
        up = await self.http.post(f"{base}/files", headers=headers, data={"purpose": "batch"},
                                  files={"file": ("batch.jsonl", "\n".join(lines).encode())})
        if up.status_code >= 400:
            raise self.wire.error(self.spec, up.status_code, up.headers, up.content)
        r = await self._call("POST", f"{base}/batches", json={
            "input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h", "metadata": {"tag": tag}})
        return self._job(r.json())

    async def poll(self, job_id: str) -> BatchJob:
        return self._job((await self._call("GET", f"{self.spec.base_url}/batches/{job_id}")).json())

    def _page(self, cursor: str | None) -> tuple[str, dict[str, Any]]:
        return f"{self.spec.base_url}/batches", {"limit": PAGE_SIZE,
                                                  **({"after": cursor} if cursor else {})}

    def _created(self, job: dict[str, Any]) -> float:
        return float(job.get("created_at") or math.inf)

    async def results(self, job_id: str) -> list[ItemOutcome]:
        b = (await self._call("GET", f"{self.spec.base_url}/batches/{job_id}")).json()
        out: list[ItemOutcome] = []
        for fid in (b.get("output_file_id"), b.get("error_file_id")):
            if not fid:
                continue
            r = await self._call("GET", f"{self.spec.base_url}/files/{fid}/content")
            for line in r.text.splitlines():
                if not line.strip():
                    continue
                x = json.loads(line)
                resp, err = x.get("response"), x.get("error")
                if resp:
                    out.append(self.outcome(x["custom_id"], resp["status_code"], resp["body"]))
                else:
                    code = (err or {}).get("code", "")
                    cls = ErrorClass.TIMEOUT if "expired" in code else ErrorClass.SERVER
                    out.append(_failed(x["custom_id"], cls, f"{code}: {(err or {}).get('message')}"))
        return out


class AnthropicBatch(BatchApi):
    def _job(self, b: dict[str, Any], tag: str = "") -> BatchJob:
        c = b["request_counts"]
        return BatchJob(id=b["id"], provider=self.spec.name,
                        state="ended" if b["processing_status"] == "ended" else "in_progress",
                        total=sum(c.values()), succeeded=c["succeeded"],
                        failed=c["errored"] + c["expired"] + c["canceled"], tag=tag)

    def _url(self, *parts: str) -> str:
        return "/".join([f"{self.spec.base_url}/v1/messages/batches", *parts])

    async def submit(self, items: list[tuple[str, Completion]], tag: str) -> BatchJob:
        reqs = [{"custom_id": cid, "params": self._item(c)[2]} for cid, c in items]
        return self._job((await self._call("POST", self._url(), json={"requests": reqs})).json(),
                         tag)

    async def poll(self, job_id: str) -> BatchJob:
        return self._job((await self._call("GET", self._url(job_id))).json())

    def _page(self, cursor: str | None) -> tuple[str, dict[str, Any]]:
        return self._url(), {"limit": PAGE_SIZE, **({"after_id": cursor} if cursor else {})}

    def _created(self, job: dict[str, Any]) -> float:
        return stamp(job.get("created_at"))

    async def _first_custom_id(self, url: str) -> str:
        """The first result line's custom_id, without downloading the whole results file."""
        async with self.http.stream("GET", url, headers=self._headers()) as r:
            if r.status_code >= 400:
                await r.aread()
                raise self.wire.error(self.spec, r.status_code, r.headers, r.content)
            async for line in r.aiter_lines():
                if line.strip():
                    return str(json.loads(line)["custom_id"])
        return ""

    async def find(self, tag: str, since: float | None = None) -> list[BatchJob]:
        found = []
        async for b in self.listing(since):
            if b["processing_status"] == "ended" and b.get("results_url"):
                if (await self._first_custom_id(b["results_url"])).startswith(tag):
                    found.append(self._job(b, tag))
        return found

    async def unresolved(self, since: float) -> int:
        """Running batches created since `since`: their custom_ids are not readable yet."""
        return sum([b["processing_status"] != "ended" async for b in self.listing(since)])

    async def results(self, job_id: str) -> list[ItemOutcome]:
        b = (await self._call("GET", self._url(job_id))).json()
        if not b.get("results_url"):
            return []
        out = []
        for line in (await self._call("GET", b["results_url"])).text.splitlines():
            if not line.strip():
                continue
            x = json.loads(line)
            res = x["result"]
            if res["type"] == "succeeded":
                out.append(self.outcome(x["custom_id"], 200, res["message"]))
            elif res["type"] == "errored":
                err = (res.get("error") or {}).get("error") or {}
                status = 400 if err.get("type") == "invalid_request_error" else 500
                out.append(self.outcome(x["custom_id"], status, {"type": "error", "error": err}))
            else:  # expired, canceled
                out.append(_failed(x["custom_id"], ErrorClass.TIMEOUT, f"item {res['type']}"))
        return out


class GeminiBatch(BatchApi):
    def _job(self, op: dict[str, Any]) -> BatchJob:
        m = op.get("metadata") or {}
        state = m.get("state", "")
        ended = state in ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED",
                          "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED")
        inl = ((m.get("output") or {}).get("inlinedResponses") or {}).get("inlinedResponses", [])
        ok = sum(1 for r in inl if "response" in r)
        return BatchJob(id=op["name"], provider=self.spec.name,
                        state="ended" if ended else "in_progress",
                        total=int((m.get("batchStats") or {}).get("requestCount", len(inl))),
                        succeeded=ok, failed=len(inl) - ok, tag=m.get("displayName", ""))

    async def submit(self, items: list[tuple[str, Completion]], tag: str) -> BatchJob:
        reqs = [{"request": self._item(c)[2], "metadata": {"key": cid}} for cid, c in items]
        url = f"{self.spec.base_url}/models/{self.spec.model}:batchGenerateContent"
        r = await self._call("POST", url, json={"batch": {
            "displayName": tag, "inputConfig": {"requests": {"requests": reqs}}}})
        return self._job(r.json())

    async def poll(self, job_id: str) -> BatchJob:
        return self._job((await self._call("GET", f"{self.spec.base_url}/{job_id}")).json())

    newest_first = False  # Gemini documents no order for its listing: walk it all

    def _page(self, cursor: str | None) -> tuple[str, dict[str, Any]]:
        return f"{self.spec.base_url}/batches", {"pageSize": PAGE_SIZE,
                                                  **({"pageToken": cursor} if cursor else {})}

    def _listed(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        return body.get("operations", []), body.get("nextPageToken") or None

    def _created(self, job: dict[str, Any]) -> float:
        return stamp((job.get("metadata") or {}).get("createTime"))

    async def results(self, job_id: str) -> list[ItemOutcome]:
        op = (await self._call("GET", f"{self.spec.base_url}/{job_id}")).json()
        m = op.get("metadata") or {}
        inl = ((m.get("output") or {}).get("inlinedResponses") or {}).get("inlinedResponses", [])
        out = []
        for r in inl:
            cid = str((r.get("metadata") or {}).get("key", ""))
            if "response" in r:
                out.append(self.outcome(cid, 200, r["response"]))
            else:
                err = r.get("error") or {}
                out.append(self.outcome(cid, int(err.get("code") or 500), {"error": err}))
        return out


BATCH_APIS: dict[str, type[BatchApi]] = {"openai": OpenAIBatch, "anthropic": AnthropicBatch,
                                         "gemini": GeminiBatch}


def batch_api(spec: ProviderSpec, api_key: str, base_url: str | None = None,
              transport: httpx.AsyncBaseTransport | None = None) -> BatchApi:
    """The batch client of a provider whose config enables one (`batch_discount` set)."""
    return BATCH_APIS[spec.api](spec, api_key, base_url, transport)
