"""Finding a run's batch job walks the provider's whole listing (actors/clients/batch.py):
on an account with more jobs than one page, the job submitted just before a kill is still
found — not submitted (and paid for) again. Against the simulator on loopback, whose
listings page in the vendors' own wire formats with a small page size."""

from __future__ import annotations

import time

import httpx
import pytest

from actors.clients.base import Completion, Message
from actors.clients.batch import SINCE_MARGIN_S, BatchApi, BatchListingTooLong, batch_api
from actors.config import load_config
from actors.simulator import SimulatorProcess, simulator_base_url

CFG = load_config()
PROVIDERS = ["gpt-4-turbo", "claude", "gemini"]
LISTINGS = ("/v1/batches", "/v1/messages/batches", "/v1beta/batches")
CURSORS = {"openai": "after", "anthropic": "after_id", "gemini": "pageToken"}


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0, seed=11) as s:
        yield s


def _settings(sim, **fields) -> None:
    httpx.put(f"{sim.url}/_sim/batches", json=fields, trust_env=False).raise_for_status()


class Listings(httpx.AsyncHTTPTransport):
    """A real transport that notes every listing request it sends (path and query)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.rstrip("/") in LISTINGS:
            self.seen.append(request.url)
        return await super().handle_async_request(request)


def _api(sim, provider: str) -> tuple[BatchApi, Listings]:
    spec = CFG.provider(provider)
    t = Listings()
    return batch_api(spec, "x", simulator_base_url(spec.api, sim.url), transport=t), t


async def _submit(api: BatchApi, tag: str) -> str:
    c = Completion(messages=[Message(role="user", content=f"Analyse SPY for {tag}.")],
                   max_tokens=50)
    return (await api.submit([(f"{tag}-00000", c)], tag)).id


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_find_follows_the_pages_to_a_job_behind_newer_ones(sim, provider):
    """The bug: one page of the listing read, the run's job behind five newer ones."""
    _settings(sim, delay_s=0, page_size=2)
    api, t = _api(sim, provider)
    since = time.time()
    tag = f"llmr-mine-{provider}"
    mine = await _submit(api, tag)
    for i in range(5):
        await _submit(api, f"llmr-other-{provider}-{i}")
    assert [j.id for j in await api.find(tag, since)] == [mine]
    assert len(t.seen) >= 3  # two pages of newer jobs before it
    cursor = CURSORS[CFG.provider(provider).api]
    assert all(cursor in u.params for u in t.seen[1:])  # each next page by the vendor's cursor
    assert [j.id for j in await api.find(tag)] == [mine]  # no `since`: the whole listing
    assert await api.find("llmr-never-submitted", since) == []
    await api.aclose()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_walk_stops_where_jobs_are_too_old_to_matter(sim, provider):
    """Newest-first listings (OpenAI, Anthropic) stop at the first job created before
    `since` less the clock margin; Gemini documents no order, so it reads every page."""
    _settings(sim, delay_s=0, page_size=1)
    api, t = _api(sim, provider)
    tag = f"llmr-old-{provider}"
    for _ in range(3):
        await _submit(api, tag)
    later = time.time() + 10 * SINCE_MARGIN_S  # every job listed is older than this
    assert await api.find(tag, later) == []
    if provider == "gemini":
        assert len(t.seen) >= 3
    else:
        assert len(t.seen) == 1
    assert len(await api.find(tag)) == 3
    await api.aclose()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_listing_past_the_page_cap_is_an_error_not_a_miss(sim, provider):
    _settings(sim, delay_s=0, page_size=1)
    api, t = _api(sim, provider)
    for i in range(3):
        await _submit(api, f"llmr-cap-{provider}-{i}")
    api.max_pages = 2
    with pytest.raises(BatchListingTooLong, match=f"{provider}.*more than 2 listing pages"):
        await api.find("llmr-not-there")
    assert len(t.seen) == 2
    await api.aclose()


async def test_a_running_anthropic_job_behind_a_page_of_ended_ones_is_unresolved(sim):
    """Anthropic shows custom_ids only once a job ended: a running job created since the
    intent keeps it unresolved (not resubmitted) wherever it sits in the listing."""
    api, _ = _api(sim, "claude")
    since = time.time()
    _settings(sim, delay_s=3600, page_size=1)
    running = await _submit(api, "llmr-running")
    _settings(sim, delay_s=0, page_size=1)
    for i in range(2):
        await _submit(api, f"llmr-ended-{i}")
    assert await api.unresolved(since) == 1
    assert await api.unresolved(time.time() + 10 * SINCE_MARGIN_S) == 0
    r = await api.http.post(api._url(running, "cancel"), headers=api._headers())
    assert r.status_code == 200
    await api.aclose()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_resumed_run_finds_its_job_many_pages_down_and_submits_nothing(
        sim, provider, tmp_path):
    """The driver was killed after submitting a job, before journaling its id, and other
    jobs were created since: the resume records the job found by its tag (to poll it)
    instead of submitting those bars again."""
    from types import SimpleNamespace

    from actors.backtest.batch_journal import BatchJournal, ItemRef, custom_id, run_tag
    from actors.backtest.batch_run import BatchRun
    from actors.backtest.spec import BacktestSpec, SeriesSpec

    _settings(sim, delay_s=0, page_size=2)
    api, _ = _api(sim, provider)
    tag = run_tag(f"resume-{provider}", 0)
    ref = ItemRef(custom_id=custom_id(tag, 0), key="SPX|1d|1|accuracy-first",
                  request_id=f"resume-{provider}-1")
    BatchJournal(tmp_path).intend(0, provider, tag, [ref])
    mine = await _submit(api, tag)  # …and the kill, before the id reached the journal
    for i in range(5):
        await _submit(api, f"llmr-busy-{provider}-{i}")
    jobs = httpx.get(f"{sim.url}/_sim/batches/stats", trust_env=False).json()["jobs"]
    spec = BacktestSpec(series=[SeriesSpec(source="sample:sp500")], batch=True,
                        runs_dir=tmp_path)
    run = SimpleNamespace(prep=SimpleNamespace(spec=spec, run_id=f"resume-{provider}"),
                          window=4, router="", sent=0, stopped=None)
    b = BatchRun(run, {provider: api}, BatchJournal(tmp_path), None, None)
    b.resume(set(), {})
    assert b.unsent == {0}
    await b._resolve(b.open[0])
    assert BatchJournal(tmp_path).read()[0].batch_id == mine and b.unsent == set()
    assert httpx.get(f"{sim.url}/_sim/batches/stats", trust_env=False).json()["jobs"] == jobs
    await api.aclose()
