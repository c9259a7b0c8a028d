"""The simulator's batch APIs as the official SDKs see them: each vendor's SDK client creates,
polls, lists and reads a batch, every object validated with the SDK's own types; a job ends
after its configured delay, and a configured share of items fails or expires."""

from __future__ import annotations

import io
import json
import time

import anthropic
import httpx
import openai
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from google import genai
from google.genai import types as gtypes
from openai.types import Batch
from openai.types.chat import ChatCompletion

from actors.simulator import SimulatorProcess, simulator_base_url
from tests.waiting import wait_until

PROMPT = "Analyse SPY. timeframe: 1d, regime: bull, close: 500.0. Answer as JSON."


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0, seed=5) as s:
        yield s


def _settings(sim, **fields) -> None:
    r = httpx.put(f"{sim.url}/_sim/batches", json=fields, timeout=10, trust_env=False)
    assert r.status_code == 200, r.text


def test_openai_batch_through_the_sdk(sim):
    _settings(sim, delay_s=0.3, item_failure=0.0, item_expired=0.0)
    oa = openai.OpenAI(base_url=simulator_base_url("openai", sim.url), api_key="x",
                       max_retries=0)
    lines = [{"custom_id": f"bar-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4-turbo", "max_tokens": 200,
                       "messages": [{"role": "user", "content": f"{PROMPT} {i}"}]}}
             for i in range(5)]
    f = oa.files.create(file=("in.jsonl", io.BytesIO(
        "".join(json.dumps(x) + "\n" for x in lines).encode())), purpose="batch")
    b = oa.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                          completion_window="24h", metadata={"run": "bt-1"})
    assert isinstance(b, Batch) and b.status == "in_progress" and b.metadata == {"run": "bt-1"}
    assert b.request_counts.total == 5
    assert [x.id for x in oa.batches.list()] [:1] == [b.id]  # found again by listing
    done = wait_until(lambda: (x := oa.batches.retrieve(b.id)).status == "completed" and x,
                      timeout=10)
    Batch.model_validate(done.model_dump())
    assert done.request_counts.completed == 5 and done.request_counts.failed == 0
    out = oa.files.content(done.output_file_id).text.splitlines()
    got = {json.loads(x)["custom_id"]: json.loads(x) for x in out}
    assert set(got) == {f"bar-{i}" for i in range(5)}
    for x in got.values():
        assert x["response"]["status_code"] == 200
        ChatCompletion.model_validate(x["response"]["body"])


def test_anthropic_batch_through_the_sdk_with_failures(sim):
    _settings(sim, delay_s=0.3, item_failure=0.3, item_expired=0.2)
    an = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
    reqs = [{"custom_id": f"bt-1-{i}", "params": {
        "model": "claude-sonnet-4-5", "max_tokens": 200,
        "messages": [{"role": "user", "content": f"{PROMPT} {i}"}]}} for i in range(60)]
    b = an.messages.batches.create(requests=reqs)
    assert isinstance(b, MessageBatch) and b.processing_status == "in_progress"
    assert b.results_url is None
    done = wait_until(lambda: (x := an.messages.batches.retrieve(b.id)).processing_status
                      == "ended" and x, timeout=10)
    c = done.request_counts
    # 60 items: no expired one among them would take a 0.8^60 chance (20 items: 1 %)
    assert c.succeeded + c.errored + c.expired == 60 and c.errored and c.expired and c.succeeded
    results = list(an.messages.batches.results(b.id))
    assert all(isinstance(r, MessageBatchIndividualResponse) for r in results)
    kinds = {r.result.type for r in results}
    assert kinds == {"succeeded", "errored", "expired"}
    ok = next(r for r in results if r.result.type == "succeeded")
    assert ok.result.message.content[0].text
    assert b.id in [x.id for x in an.messages.batches.list()]


def test_gemini_batch_through_the_sdk(sim):
    _settings(sim, delay_s=0.3, item_failure=0.0, item_expired=0.0)
    gc = genai.Client(api_key="x", http_options=gtypes.HttpOptions(base_url=sim.url,
                                                                   api_version="v1beta"))
    src = [{"contents": [{"role": "user", "parts": [{"text": f"{PROMPT} {i}"}]}],
            "metadata": {"key": f"bar-{i}"}} for i in range(4)]
    job = gc.batches.create(model="gemini-2.5-pro", src=src,
                            config={"display_name": "bt-1"})
    assert isinstance(job, gtypes.BatchJob) and job.name.startswith("batches/")
    assert job.display_name == "bt-1" and job.state == gtypes.JobState.JOB_STATE_RUNNING
    done = wait_until(lambda: (x := gc.batches.get(name=job.name)).done and x, timeout=10)
    assert done.state == gtypes.JobState.JOB_STATE_SUCCEEDED
    inl = done.dest.inlined_responses
    assert len(inl) == 4 and all(r.response.text for r in inl)
    assert {r.metadata["key"] for r in inl if r.metadata} <= {f"bar-{i}" for i in range(4)}


def test_a_job_ends_only_after_its_delay_and_needs_a_key(sim):
    _settings(sim, delay_s=5.0)
    r = httpx.post(f"{sim.url}/v1/messages/batches", timeout=10, trust_env=False,
                   json={"requests": [{"custom_id": "a", "params": {
                       "model": "claude-sonnet-4-5", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "hi"}]}}]})
    assert r.status_code == 401  # no key
    an = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
    b = an.messages.batches.create(requests=[{"custom_id": "a", "params": {
        "model": "claude-sonnet-4-5", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}]}}])
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        assert an.messages.batches.retrieve(b.id).processing_status == "in_progress"
    bad = httpx.put(f"{sim.url}/_sim/batches", json={"delay_s": -1}, timeout=10,
                    trust_env=False)
    assert bad.status_code == 400


def test_listings_page_as_the_sdks_page_them(sim):
    """Each SDK's own pager walks the simulator's pages (OpenAI `after`, Anthropic
    `after_id`, Gemini `pageToken`) to every job, newest first; bad paging is a 400."""
    _settings(sim, delay_s=0.0, page_size=2)
    oa = openai.OpenAI(base_url=simulator_base_url("openai", sim.url), api_key="x",
                       max_retries=0)
    an = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
    gc = genai.Client(api_key="x", http_options=gtypes.HttpOptions(base_url=sim.url,
                                                                   api_version="v1beta"))
    line = {"custom_id": "p-0", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4-turbo", "max_tokens": 50,
                     "messages": [{"role": "user", "content": PROMPT}]}}
    made: dict[str, list[str]] = {"openai": [], "anthropic": [], "gemini": []}
    for i in range(5):
        f = oa.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())),
                            purpose="batch")
        made["openai"].append(oa.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id)
        made["anthropic"].append(an.messages.batches.create(requests=[{
            "custom_id": f"p-{i}", "params": {"model": "claude-sonnet-4-5", "max_tokens": 50,
                                              "messages": [{"role": "user",
                                                            "content": PROMPT}]}}]).id)
        made["gemini"].append(gc.batches.create(model="gemini-2.5-pro", src=[{
            "contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}]).name)
    first = oa.batches.list(limit=100)
    assert len(first.data) == 2 and first.has_more  # the simulator's page_size
    listed = [b.id for b in first]  # the SDK fetches the next pages itself
    assert listed[:5] == made["openai"][::-1] and len(listed) == len(set(listed))
    page = an.messages.batches.list(limit=100)
    assert len(page.data) == 2 and page.has_more and page.last_id == page.data[-1].id
    listed = [b.id for b in page]
    assert listed[:5] == made["anthropic"][::-1] and len(listed) == len(set(listed))
    before = an.messages.batches.list(before_id=listed[3], limit=2)
    assert [b.id for b in before.data] == listed[1:3] and before.has_more
    listed = [b.name for b in gc.batches.list(config={"page_size": 100})]
    assert listed[:5] == made["gemini"][::-1] and len(listed) == len(set(listed))
    for path, key in (("/v1/batches?limit=101", "authorization"),
                      ("/v1/messages/batches?limit=0", "x-api-key"),
                      ("/v1/batches?after=batch_nope", "authorization"),
                      ("/v1beta/batches?pageToken=%25%25", "x-goog-api-key")):
        r = httpx.get(f"{sim.url}{path}", headers={key: "Bearer x"}, timeout=10,
                      trust_env=False)
        assert r.status_code == 400, (path, r.text)
