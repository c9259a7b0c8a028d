"""The providers' batch APIs, simulated in their own wire formats (PROVIDERS.md "Batch APIs"):

- OpenAI: `POST /v1/files` (multipart, purpose=batch, JSONL of `{custom_id, method, url,
  body}`), `POST /v1/batches`, `GET /v1/batches[/{id}]`, `POST /v1/batches/{id}/cancel`,
  `GET /v1/files/{id}/content` (output lines `{id, custom_id, response: {status_code,
  request_id, body}, error}`; failed items in the error file).
- Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches[/{id}]`,
  `POST …/{id}/cancel`, `GET …/{id}/results` (lines `{custom_id, result: {type: succeeded,
  message} | {type: errored, error} | {type: expired}}`).
- Gemini: `POST /v1beta/models/{model}:batchGenerateContent` (inline requests) → an
  operation `batches/{id}`; `GET /v1beta/batches/{id}` with `metadata.state` and, when
  done, `metadata.output.inlinedResponses.inlinedResponses`.

Listings page as the vendors' do (actors/simulator/batch_pages.py). A job ends `delay_s`
after it was created (`PUT /_sim/batches {"delay_s", "item_failure", "item_expired",
"page_size"}`); its items are answered then, by the same engine as synchronous calls
(profiles, faults and billing alike, without rate limits or latency), on the first poll
after that moment. `item_failure` / `item_expired` make that share of items fail or
expire, chosen by a hash of (job, custom_id) so a test can count on them. The shapes are
checked against the official SDKs' own types in tests/test_simulator_batches.py. The job
itself, its settings and counts: actors/simulator/batch_jobs.py.
"""

from __future__ import annotations

import json
import secrets
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from actors.simulator import wire
from actors.simulator.batch_jobs import (
    BatchSettings,
    BatchStats,
    Job,
    error_reply,
    iso,
    json_reply,
    share,
)
from actors.simulator.batch_pages import after_token, limit_of, page_of, query_of, token_of
from actors.simulator.engine import Reply, Simulator


class Batches:
    """Batch jobs and uploaded files of one simulator (in memory)."""

    def __init__(self, sim: Simulator, clock: Any = time.time) -> None:
        self.sim = sim
        self.settings = BatchSettings()
        self.files: dict[str, tuple[str, bytes]] = {}
        self.jobs: dict[str, Job] = {}
        self._clock = clock
        self._counted_from = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    def _new(self, api: wire.Api, model: str | None, items: list[tuple[str, bytes]],
             **kw: Any) -> Job:
        prefix = {"openai": "batch_", "anthropic": "msgbatch_", "gemini": ""}[api]
        now = self._clock()
        job = Job(f"{prefix}{secrets.token_hex(12)}", api, model, items, now,
                  now + self.settings.delay_s, **kw)
        self.jobs[job.id] = job
        return job

    def stats(self) -> BatchStats:
        """Counts over every job created since the last `reset_stats`."""
        jobs = [j for j in self.jobs.values() if j.created >= self._counted_from]
        by_api: dict[str, int] = {}
        seen: set[tuple[str | None, int, bytes]] = set()
        for j in jobs:
            by_api[j.api] = by_api.get(j.api, 0) + len(j.items)
            for _, body in j.items:
                seen.add((j.model, len(body), body))
        return BatchStats(jobs=len(jobs), items=sum(by_api.values()), distinct_items=len(seen),
                          by_api=by_api)

    def reset_stats(self) -> None:
        self._counted_from = self._clock()

    async def _settle(self, job: Job, headers: dict[str, str], query: str) -> None:
        """Answer every item once the job's time has come (on the first poll after it)."""
        if job.ended is not None or (job.cancelled is None and self._clock() < job.ready):
            return
        s = self.settings
        for cid, body in job.items:
            if job.cancelled is not None:
                job.results.append((cid, "canceled", 0, None))
            elif share(job.id, cid, "expired") < s.item_expired:
                job.results.append((cid, "expired", 0, None))
            elif share(job.id, cid, "failed") < s.item_failure:
                job.results.append((cid, "errored", 500, "Internal server error (simulated)."))
            else:
                r = await self.sim.handle(job.api, headers, body, query, job.model, batch=True)
                obj = json.loads(r.body) if r.body[:1] == b"{" else {"error": r.body.decode()}
                job.results.append((cid, "succeeded" if r.status == 200 else "errored",
                                    r.status, obj))
        job.ended = self._clock()

    async def _settle_due(self, api: wire.Api, headers: dict[str, str], query: str) -> None:
        """A listing shows every job as of now, as the vendors' do."""
        for job in list(self.jobs.values()):
            if job.api == api:
                await self._settle(job, headers, query)

    def _newest(self, api: wire.Api) -> list[Job]:
        """One vendor's jobs, newest first, as every listing orders them."""
        return [j for j in reversed(self.jobs.values()) if j.api == api]

    def counts(self, job: Job) -> dict[str, int]:
        out = {"succeeded": 0, "errored": 0, "expired": 0, "canceled": 0}
        for _, outcome, _, _ in job.results:
            out[outcome] += 1
        return out

    # -- routing ------------------------------------------------------------------------

    @staticmethod
    def serves(path: str) -> bool:
        """Whether `path` is a batch endpoint (cheap: checked on every request)."""
        return path.startswith(("/v1/batches", "/v1/files", "/v1/messages/batches",
                                "/v1beta/batches")) or path.endswith(":batchGenerateContent")

    async def route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                    query: str) -> Reply | None:
        """A batch endpoint's reply, or None when `path` is none of them."""
        api: wire.Api | None = None
        if path.startswith(("/v1/batches", "/v1/files")):
            api = "openai"
        elif path.startswith("/v1/messages/batches"):
            api = "anthropic"
        elif path.startswith("/v1beta/batches") or (
                path.startswith("/v1beta/models/") and path.endswith(":batchGenerateContent")):
            api = "gemini"
        if api is None:
            return None
        if not wire.authorized(api, headers, query):
            return json_reply(401, {"error": {"message": "Missing or invalid API key (simulator)."}})
        try:
            if api == "openai":
                return await self._openai(method, path, headers, body, query)
            if api == "anthropic":
                return await self._anthropic(method, path, headers, body, query)
            return await self._gemini(method, path, headers, body, query)
        except (ValueError, KeyError, TypeError) as exc:
            return error_reply(400, f"Invalid request: {exc}")

    # -- OpenAI -------------------------------------------------------------------------

    async def _openai(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      query: str) -> Reply:
        parts = path.strip("/").split("/")  # v1, files|batches, id?, action?
        if parts[1] == "files":
            if method == "POST" and len(parts) == 2:
                return self._upload(headers, body)
            if method == "GET" and len(parts) == 4 and parts[3] == "content":
                f = self.files.get(parts[2])
                return Reply(200, f[1], [(b"content-type", b"application/jsonl")]) if f else \
                    error_reply(404, f"No such File object: {parts[2]}")
            return error_reply(404, f"no route for {method} {path}")
        if method == "POST" and len(parts) == 2:
            req = json.loads(body)
            f = self.files.get(req["input_file_id"])
            if f is None:
                return error_reply(400, f"No such File object: {req['input_file_id']}")
            items = []
            for line in f[1].splitlines():
                if line.strip():
                    item = json.loads(line)
                    items.append((item["custom_id"], json.dumps(item["body"]).encode()))
            job = self._new("openai", None, items, metadata=req.get("metadata") or {},
                            input_file_id=req["input_file_id"])
            return json_reply(200, self._openai_batch(job))
        if method == "GET" and len(parts) == 2:
            await self._settle_due("openai", headers, query)
            q = query_of(query)
            page = page_of(self._newest("openai"),
                           limit_of(q, "limit", "openai", self.settings.page_size),
                           after=q.get("after") or None)
            data = [self._openai_batch(j) for j in page.jobs]
            return json_reply(200, {"object": "list", "data": data, "has_more": page.has_more,
                               "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None})
        job = self.jobs.get(parts[2]) if len(parts) > 2 else None
        if job is None or job.api != "openai":
            return error_reply(404, f"No batch found with id '{parts[2] if len(parts) > 2 else ''}'")
        if method == "POST" and parts[3:] == ["cancel"]:
            job.cancelled = job.cancelled or self._clock()
        await self._settle(job, headers, query)
        return json_reply(200, self._openai_batch(job))

    def _upload(self, headers: dict[str, str], body: bytes) -> Reply:
        ctype = headers.get("content-type", "")
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            return error_reply(400, "expected a multipart body with purpose=batch and a file")
        fid = f"file-{secrets.token_hex(12)}"
        name, content = fields["file"]
        self.files[fid] = (name or "batch.jsonl", content)
        return json_reply(200, self._file(fid))

    def _file(self, fid: str) -> dict[str, Any]:
        name, content = self.files[fid]
        return {"id": fid, "object": "file", "bytes": len(content),
                "created_at": int(self._clock()), "filename": name, "purpose": "batch",
                "status": "processed"}

    def _openai_batch(self, job: Job) -> dict[str, Any]:
        c = self.counts(job)
        ended = job.ended is not None
        status = ("cancelled" if job.cancelled is not None and ended else
                  "cancelling" if job.cancelled is not None else
                  "completed" if ended else "in_progress")
        out_id = err_id = None
        if ended:
            out_lines, err_lines = [], []
            for cid, outcome, st, obj in job.results:
                if outcome == "succeeded":
                    out_lines.append({"id": f"batch_req_{cid}", "custom_id": cid, "response": {
                        "status_code": st, "request_id": f"req_{cid}", "body": obj},
                        "error": None})
                elif outcome == "errored" and isinstance(obj, dict):
                    err_lines.append({"id": f"batch_req_{cid}", "custom_id": cid, "response": {
                        "status_code": st, "request_id": f"req_{cid}", "body": obj},
                        "error": None})
                else:
                    code = "batch_expired" if outcome == "expired" else (
                        "batch_cancelled" if outcome == "canceled" else "server_error")
                    err_lines.append({"id": f"batch_req_{cid}", "custom_id": cid,
                                      "response": None,
                                      "error": {"code": code, "message": str(obj or outcome)}})
            out_id, err_id = f"file-out-{job.id}", f"file-err-{job.id}"
            for fid, lines in ((out_id, out_lines), (err_id, err_lines)):
                self.files[fid] = (f"{fid}.jsonl",
                                   "".join(json.dumps(x) + "\n" for x in lines).encode())
        return {
            "id": job.id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": job.input_file_id, "completion_window": "24h", "status": status,
            "output_file_id": out_id, "error_file_id": err_id,
            "created_at": int(job.created), "in_progress_at": int(job.created),
            "expires_at": int(job.created + 86400), "finalizing_at": None,
            "completed_at": int(job.ended) if ended and job.cancelled is None else None,
            "failed_at": None, "expired_at": None,
            "cancelling_at": int(job.cancelled) if job.cancelled is not None else None,
            "cancelled_at": int(job.ended) if ended and job.cancelled is not None else None,
            "request_counts": {"total": len(job.items),
                               "completed": c["succeeded"],
                               "failed": c["errored"] + c["expired"] + c["canceled"]},
            "metadata": job.metadata or None,
        }

    # -- Anthropic ----------------------------------------------------------------------

    async def _anthropic(self, method: str, path: str, headers: dict[str, str], body: bytes,
                         query: str) -> Reply:
        parts = path.strip("/").split("/")  # v1, messages, batches, id?, action?
        base = f"http://{headers.get('host', 'localhost')}/v1/messages/batches"
        if method == "POST" and len(parts) == 3:
            req = json.loads(body)
            items = [(r["custom_id"], json.dumps(r["params"]).encode()) for r in req["requests"]]
            if not items:
                return error_reply(400, "requests: at least one request")
            return json_reply(200, self._anthropic_batch(self._new("anthropic", None, items), base))
        if method == "GET" and len(parts) == 3:
            await self._settle_due("anthropic", headers, query)
            q = query_of(query)
            page = page_of(self._newest("anthropic"),
                           limit_of(q, "limit", "anthropic", self.settings.page_size),
                           after=q.get("after_id") or None, before=q.get("before_id") or None,
                           name="after_id")
            data = [self._anthropic_batch(j, base) for j in page.jobs]
            return json_reply(200, {"data": data, "has_more": page.has_more,
                               "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None})
        job = self.jobs.get(parts[3]) if len(parts) > 3 else None
        if job is None or job.api != "anthropic":
            return json_reply(404, {"type": "error", "error": {"type": "not_found_error",
                                                          "message": "batch not found"}})
        if method == "POST" and parts[4:] == ["cancel"]:
            job.cancelled = job.cancelled or self._clock()
        await self._settle(job, headers, query)
        if method == "GET" and parts[4:] == ["results"]:
            if job.ended is None:
                return json_reply(400, {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "batch still in progress"}})
            lines = []
            for cid, outcome, _st, obj in job.results:
                if outcome == "succeeded":
                    result: dict[str, Any] = {"type": "succeeded", "message": obj}
                elif outcome == "errored":
                    err = obj.get("error") if isinstance(obj, dict) else None
                    result = {"type": "errored", "error": {"type": "error", "error": err or {
                        "type": "api_error", "message": str(obj)}}}
                else:
                    result = {"type": outcome}
                lines.append(json.dumps({"custom_id": cid, "result": result}) + "\n")
            return Reply(200, "".join(lines).encode(), [(b"content-type", b"application/x-jsonl")])
        return json_reply(200, self._anthropic_batch(job, base))

    def _anthropic_batch(self, job: Job, base: str) -> dict[str, Any]:
        c = self.counts(job)
        ended = job.ended is not None
        return {
            "id": job.id, "type": "message_batch",
            "processing_status": "ended" if ended else (
                "canceling" if job.cancelled is not None else "in_progress"),
            "request_counts": {"processing": 0 if ended else len(job.items),
                               "succeeded": c["succeeded"], "errored": c["errored"],
                               "canceled": c["canceled"], "expired": c["expired"]},
            "ended_at": iso(job.ended), "created_at": iso(job.created),
            "expires_at": iso(job.created + 86400), "archived_at": None,
            "cancel_initiated_at": iso(job.cancelled),
            "results_url": f"{base}/{job.id}/results" if ended else None,
        }

    # -- Gemini -------------------------------------------------------------------------

    async def _gemini(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      query: str) -> Reply:
        if method == "POST" and path.endswith(":batchGenerateContent"):
            model = path[len("/v1beta/models/"):-len(":batchGenerateContent")]
            batch = json.loads(body)["batch"]
            cfg = batch.get("inputConfig") or batch.get("input_config")
            reqs = cfg["requests"]["requests"]
            items = [(str((r.get("metadata") or {}).get("key", i)),
                      json.dumps(r["request"]).encode()) for i, r in enumerate(reqs)]
            job = self._new("gemini", model, items,
                            display_name=batch.get("displayName") or batch.get("display_name")
                            or "")
            return json_reply(200, self._gemini_op(job))
        if method == "GET" and path.rstrip("/") == "/v1beta/batches":
            await self._settle_due("gemini", headers, query)
            q = query_of(query)
            page = page_of(self._newest("gemini"),
                           limit_of(q, "pageSize", "gemini", self.settings.page_size),
                           after=after_token(q.get("pageToken", "")), name="pageToken")
            listing: dict[str, Any] = {"operations": [self._gemini_op(j) for j in page.jobs]}
            if page.has_more:
                listing["nextPageToken"] = token_of(page.jobs[-1])
            return json_reply(200, listing)
        name = path[len("/v1beta/"):]
        job = self.jobs.get(name.removeprefix("batches/").removesuffix(":cancel"))
        if job is None or job.api != "gemini":
            return json_reply(404, {"error": {"code": 404, "message": f"{name} not found",
                                         "status": "NOT_FOUND"}})
        if method == "POST" and name.endswith(":cancel"):
            job.cancelled = job.cancelled or self._clock()
            await self._settle(job, headers, query)
            return json_reply(200, {})
        await self._settle(job, headers, query)
        return json_reply(200, self._gemini_op(job))

    def _gemini_op(self, job: Job) -> dict[str, Any]:
        ended = job.ended is not None
        state = ("BATCH_STATE_CANCELLED" if job.cancelled is not None and ended else
                 "BATCH_STATE_SUCCEEDED" if ended else "BATCH_STATE_RUNNING")
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                     "GenerateContentBatch",
            "model": f"models/{job.model}", "displayName": job.display_name,
            "name": f"batches/{job.id}", "state": state, "createTime": iso(job.created),
            "updateTime": iso(job.ended or job.created),
            "batchStats": {"requestCount": str(len(job.items))}}
        if ended:
            meta["endTime"] = iso(job.ended)
            responses = []
            for cid, outcome, st, obj in job.results:
                if outcome == "succeeded":
                    responses.append({"response": obj, "metadata": {"key": cid}})
                else:
                    err = obj.get("error") if isinstance(obj, dict) else None
                    responses.append({"error": err or {
                        "code": st or 504, "message": outcome,
                        "status": "DEADLINE_EXCEEDED" if outcome == "expired" else "INTERNAL"},
                        "metadata": {"key": cid}})
            meta["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
        return {"name": f"batches/{job.id}", "metadata": meta, "done": ended}
