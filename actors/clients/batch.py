"""The providers' batch APIs (PROVIDERS.md "Batch APIs"): submit many completions as one job,
find jobs again by a tag, poll them, read their results — about half the synchronous price.

Each item's body is what the provider's synchronous wire client would send (`build`), and
each item's answer is parsed and classified by that same client (`parse`): a batch result
is a `Result` or a `ProviderError` exactly like a synchronous one, and its cost is the
synchronous price × the provider's `batch_discount`.

Tags (to find a job after the driver that submitted it died): OpenAI batch `metadata`
{"tag": …}; Gemini the job's `displayName`; Anthropic batches carry no metadata, so the
tag is the prefix of every item's `custom_id` and `find` can only recognise ended jobs (it
reads their results) — the caller's journal of submitted job ids is what covers the rest.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from actors.clients.base import Completion, Result
from actors.clients.registry import CLIENTS
from actors.clients.wire import WireClient
from actors.config import ProviderSpec
from actors.errors import ErrorClass, ProviderError


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
    async def find(self, tag: str) -> list[BatchJob]: ...

    async def unresolved(self, since: float) -> int:
        """Jobs created at or after `since` (unix time) that `find` cannot see yet: one of
        them may carry a tag being looked for. 0 where `find` sees running jobs too."""
        return 0

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

    async def find(self, tag: str) -> list[BatchJob]:
        r = await self._call("GET", f"{self.spec.base_url}/batches", params={"limit": 100})
        return [j for j in map(self._job, r.json()["data"]) if j.tag == tag]

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

    async def find(self, tag: str) -> list[BatchJob]:
        found = []
        for b in (await self._call("GET", self._url(), params={"limit": 100})).json()["data"]:
            if b["processing_status"] == "ended" and b.get("results_url"):
                r = await self._call("GET", b["results_url"])
                first = r.text.split("\n", 1)[0]
                if first and json.loads(first)["custom_id"].startswith(tag):
                    found.append(self._job(b, tag))
        return found

    async def unresolved(self, since: float) -> int:
        """Running batches created since `since`: their custom_ids are not readable yet."""
        n = 0
        for b in (await self._call("GET", self._url(), params={"limit": 100})).json()["data"]:
            created = datetime.fromisoformat(b["created_at"]).timestamp()
            if b["processing_status"] != "ended" and created >= since - 1.0:
                n += 1
        return n

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

    async def find(self, tag: str) -> list[BatchJob]:
        r = await self._call("GET", f"{self.spec.base_url}/batches", params={"pageSize": 100})
        return [j for j in map(self._job, r.json().get("operations", [])) if j.tag == tag]

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
