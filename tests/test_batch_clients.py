"""The batch clients (actors/clients/batch.py) against the simulator's batch APIs: submit,
find by tag, poll, results parsed and classified like synchronous answers, at the batch
price."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from actors.clients.base import Completion, Message
from actors.clients.batch import batch_api
from actors.config import load_config
from actors.core.errors import ErrorClass
from actors.simulator import SimulatorProcess, simulator_base_url

CFG = load_config()
PROMPT = "Analyse SPY. timeframe: 1d, regime: bull, close: 500.0. Answer as JSON."


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0, seed=3) as s:
        yield s


def _items(n: int, tag: str) -> list[tuple[str, Completion]]:
    return [(f"{tag}-{i}", Completion(messages=[Message(role="user", content=f"{PROMPT} {i}")],
                                      max_tokens=200)) for i in range(n)]


async def _until_ended(api, job_id: str):
    for _ in range(500):
        job = await api.poll(job_id)
        if job.state == "ended":
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("job never ended")


@pytest.mark.parametrize("provider", ["gpt-4-turbo", "claude", "gemini"])
async def test_submit_find_poll_results_at_the_batch_price(sim, provider):
    httpx.put(f"{sim.url}/_sim/batches", json={"delay_s": 0.2, "item_failure": 0.25},
              trust_env=False).raise_for_status()
    spec = CFG.provider(provider)
    api = batch_api(spec, "x", simulator_base_url(spec.api, sim.url))
    tag = f"bt-run1-{provider}"
    job = await api.submit(_items(8, tag), tag)
    assert job.state == "in_progress" and job.total == 8
    done = await _until_ended(api, job.id)
    assert done.succeeded + done.failed == 8 and done.failed > 0
    if spec.api != "anthropic":  # Anthropic batches carry no metadata: found once ended
        assert [j.id for j in await api.find(tag)] == [job.id]
    assert job.id in [j.id for j in await api.find(tag)]
    assert await api.find("another-run") == []
    out = await api.results(job.id)
    assert sorted(o.custom_id for o in out) == sorted(cid for cid, _ in _items(8, tag))
    ok = [o for o in out if o.result is not None]
    bad = [o for o in out if o.result is None]
    assert len(ok) == done.succeeded and len(bad) == done.failed
    assert all(o.error_class == ErrorClass.SERVER for o in bad)  # retryable, like a 500
    r = ok[0].result
    full = r.model_copy(update={"cost_usd": 0.0})
    from actors.core.cost import cost_usd

    sync_price = cost_usd(spec, full.input_tokens, full.output_tokens,
                          full.cached_input_tokens, full.cache_write_tokens)
    assert r.cost_usd == pytest.approx(sync_price * 0.5) and r.cost_usd > 0
    assert r.text and r.provider == provider
    await api.aclose()


def test_a_provider_without_a_batch_api_is_refused():
    with pytest.raises(ValueError, match="no batch API"):
        batch_api(CFG.provider("mixtral"), "x")
