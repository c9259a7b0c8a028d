"""Request ids as idempotency keys, without Ray: the router core with scripted providers and
the real SQLite store in a temporary state directory."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.core.records import AttemptRecord, RequestRecord
from actors.routing.route import RouteRequest, RoutingError
from actors.shells.router_state import decode_outcome, encode_outcome
from actors.stores.idempotency import (
    IdempotencyBook,
    IdempotencySpec,
    IdempotencyStore,
    safe_id,
)
from tests.test_router_core import CFG, MSG, Fake, make

KEY = b"k" * 32


def book(tmp_path=None, *, on_disk: bool = True, memory: int = 100, clock=time.time,
         window_s: float = 86400.0) -> IdempotencyBook:
    store = IdempotencyStore(tmp_path / "idem.sqlite3") if tmp_path is not None else None
    return IdempotencyBook(IdempotencySpec(window_s=window_s, memory_entries=memory), store,
                           key=KEY, kept=(RoutingError,),
                           encode=encode_outcome if on_disk else None, decode=decode_outcome,
                           clock=clock)


def routed(fake: Fake, b: IdempotencyBook):
    router, sink = make(fake)
    router.idempotency = b
    return router, sink


def req(text: str = "Is SPY bullish?", rid: str = "order-42", **kw) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": text}], request_id=rid, **kw)


def billed(sink: list) -> float:
    return sum(r.cost_usd for r in sink if isinstance(r, AttemptRecord))


async def test_same_id_same_request_replays_without_a_provider_call(tmp_path):
    fake = Fake()
    router, sink = routed(fake, book(tmp_path))
    first = await router.route(req())
    again = await router.route(req(timeout=5, priority="batch"))  # deadline/lane may differ
    assert len(fake.calls) == 1 and sum(isinstance(x, RequestRecord) for x in sink) == 1
    assert again.text == first.text and again.cost_usd == first.cost_usd
    assert again.replayed and not first.replayed and again.request_id == "order-42"
    assert billed(sink) == pytest.approx(first.cost_usd)


async def test_same_id_different_request_is_a_conflict(tmp_path):
    fake = Fake()
    router, _ = routed(fake, book(tmp_path))
    await router.route(req())
    for other in (req("Is QQQ bullish?"), req(max_tokens=7), req(policy="cost-aware"),
                  req(context={"regime": "bear"})):
        with pytest.raises(RoutingError) as info:
            await router.route(other)
        assert info.value.error_class.value == "idempotency_conflict"
        assert "order-42" in info.value.message
    assert len(fake.calls) == 1
    await router.route(req(policy="accuracy-first"))  # the default, named: the same request
    assert len(fake.calls) == 1
    await router.route(req(rid="ctx", context={"regime": "bull", "task": "analysis"}))
    r = await router.route(req(rid="ctx", context={"task": "analysis", "regime": "bull"}))
    assert r.replayed and len(fake.calls) == 2  # a context's key order does not matter


async def test_a_failed_request_replays_its_error(tmp_path):
    fake = Fake({n: ["server", "server"] for n in CFG.names})
    router, _ = routed(fake, book(tmp_path))
    with pytest.raises(RoutingError) as first:
        await router.route(req())
    with pytest.raises(RoutingError) as again:
        await router.route(req())
    assert again.value.error_class == first.value.error_class
    assert again.value.trace.replayed and len(fake.calls) == len(CFG.names)


async def test_duplicates_in_flight_wait_for_the_original():
    fake = Fake(delay=0.2)
    router, sink = routed(fake, book())
    out = await asyncio.gather(*(router.route(req()) for _ in range(20)))
    assert len(fake.calls) == 1 and sum(isinstance(x, RequestRecord) for x in sink) == 1
    assert sum(not r.replayed for r in out) == 1 and {r.text for r in out} == {out[0].text}


async def started(fake: Fake, timeout_s: float = 5.0) -> None:
    """Wait until the original request reached its (slow) provider."""
    deadline = time.monotonic() + timeout_s
    while not fake.calls:
        assert time.monotonic() < deadline, "the original never reached a provider"
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("duplicate, error_class, words", [
    (req("something else"), "idempotency_conflict", "in use by another request"),
    (req(timeout=0.1), "deadline", "still in flight"),  # same body, own short deadline
])
async def test_a_duplicate_in_flight_that_cannot_wait(duplicate, error_class, words):
    fake = Fake(delay=0.5)
    router, _ = routed(fake, book())
    original = asyncio.ensure_future(router.route(req()))
    await started(fake)
    with pytest.raises(RoutingError) as info:
        await router.route(duplicate)
    assert info.value.error_class.value == error_class and words in info.value.message
    assert (await original).text and len(fake.calls) == 1


async def test_outcomes_survive_a_restart_on_disk(tmp_path):
    fake = Fake()
    router, _ = routed(fake, book(tmp_path))
    first = await router.route(req())
    router.idempotency.close()
    fake2 = Fake()
    router2, sink2 = routed(fake2, book(tmp_path))  # a restarted router: empty memory
    again = await router2.route(req())
    assert again.replayed and again.text == first.text and again.parsed == first.parsed
    assert fake2.calls == [] and sink2 == []
    with pytest.raises(RoutingError, match="different request"):
        await router2.route(req("changed"))


async def test_without_answers_on_disk_a_restart_cannot_replay(tmp_path):
    """store_text hash/none: the answer is kept in memory only; the disk has the hash."""
    router, _ = routed(Fake(), book(tmp_path, on_disk=False))
    first = await router.route(req())
    assert (await router.route(req())).text == first.text  # from memory
    router.idempotency.close()
    raw = (tmp_path / "idem.sqlite3").read_bytes()
    assert first.text.encode() not in raw and b"SPY" not in raw
    fake2 = Fake()
    router2, _ = routed(fake2, book(tmp_path, on_disk=False))
    with pytest.raises(RoutingError) as info:
        await router2.route(req())
    assert info.value.error_class.value == "idempotency_conflict"
    assert "no longer kept" in info.value.message and fake2.calls == []


async def test_past_the_window_the_id_routes_again(tmp_path):
    now = [1000.0]
    fake = Fake()
    router, _ = routed(fake, book(tmp_path, clock=lambda: now[0], window_s=60))
    await router.route(req())
    now[0] += 61
    r = await router.route(req("another request, same id"))
    assert not r.replayed and len(fake.calls) == 2


async def test_memory_is_bounded_and_the_disk_answers_the_rest(tmp_path):
    b = book(tmp_path, memory=3)
    router, _ = routed(Fake(), b)
    for i in range(10):
        await router.route(req(rid=f"r{i}"))
    assert len(b._recent) == 3 and b.store.count() < 10  # not written on the request path
    await b.flush()
    assert b.store.count() == 10
    assert (await router.route(req(rid="r0"))).replayed


async def test_an_outcome_is_stored_only_once_its_records_are_durable(tmp_path):
    """A router lost after storing an outcome but before its journal committed the records
    would leave a re-send replayed with no audit rows: the store waits for the journal."""
    b = book(tmp_path)
    durable = asyncio.Event()
    b.durable_first = durable.wait
    router, _ = routed(Fake(), b)
    await router.route(req())
    writing = asyncio.ensure_future(b.flush())
    await asyncio.sleep(0.05)  # let the write run as far as it can (a negative check)
    assert not writing.done() and b.store.get("order-42") is None
    assert (await router.route(req())).replayed  # replayed from memory meanwhile
    durable.set()
    await asyncio.wait_for(writing, 5)
    assert b.store.get("order-42") is not None


async def test_outcomes_whose_records_cannot_be_made_durable_stay_unwritten(tmp_path):
    b = book(tmp_path)

    async def fenced() -> None:
        raise RuntimeError("another router took the state over")

    b.durable_first = fenced
    router, _ = routed(Fake(), b)
    await router.route(req())
    await b.flush()
    assert b.store.get("order-42") is None and "order-42" in b._unwritten


async def test_every_execution_has_its_own_token():
    fake = Fake({"claude": ["server", "server"]})
    router, sink = make(fake)  # no book: each call is a new execution
    await router.route(req(fallbacks=["claude", "gemini"]))
    await router.route(req(fallbacks=["claude", "gemini"]))
    tokens = [c.execution for _, c in fake.calls]
    assert len(set(tokens)) == 2 and tokens[0] == tokens[1] != tokens[2] == tokens[3]
    atts = [x for x in sink if isinstance(x, AttemptRecord)]
    assert [a.execution for a in atts] == tokens


@pytest.mark.parametrize("rid, ok", [
    ("bt:demo-20261127-101500:cost-aware:analysis:SPX:1d:20080102T000000~2", True),
    ("chatcmpl-3f9a", True), ("a/b+c=d@e^f", True), ("x" * 128, True), ("x" * 129, False),
    ("", False), ("a\r\nx-evil: 1", False), ("a b", False), ('a"b', False), ("é", False),
])
def test_request_id_character_set(rid: str, ok: bool):
    assert safe_id(rid) is ok
    if ok:
        assert RouteRequest(messages=MSG, request_id=rid).request_id == rid
    else:
        with pytest.raises(ValueError, match="request id"):
            RouteRequest(messages=MSG, request_id=rid)


async def test_a_streamed_request_without_an_id_reads_no_store(tmp_path):
    """The router (or the Python API's client, `with_id`) made its id up: no store can
    hold it, so the first token does not wait on a lookup (nor does a plain request); an id
    the caller chose is still looked up."""
    from actors.clients.base import Result
    from actors.clients.stream import TextDelta
    from actors.rpc.messages import ProviderReply

    b = book(tmp_path)
    reads: list[str] = []
    get = b.store.get
    b.store.get = lambda rid: reads.append(rid) or get(rid)  # type: ignore[method-assign]
    router, _ = routed(Fake(), b)

    async def stream_provider(name, call):
        yield TextDelta(choice=0, text="long")
        res = Result(provider=name, model="m", text="long", input_tokens=10, output_tokens=1,
                     finish_reason="stop", latency_s=0.01)
        yield ProviderReply(provider=name, model="m", result=res, attempts=[])

    router.stream_provider = stream_provider
    made_up = [x async for x in router.route_stream(req(rid=None))]
    assert [x.text for x in made_up if isinstance(x, TextDelta)] == ["long"]
    assert reads == []
    [x async for x in router.route_stream(req(rid="order-7"))]
    assert reads == ["order-7"]
    from actors.caller.client import with_id  # the Python API's made-up id: not looked up

    made = with_id(req(rid=None))
    assert made.request_id and made.fresh_id
    [x async for x in router.route_stream(made)]
    await router.route(with_id(req(rid=None)))
    assert reads == ["order-7"]
    await router.route(req(rid="order-8"))  # a chosen id still is, plain or streamed
    assert reads == ["order-7", "order-8"]


def test_a_caller_cannot_mark_its_own_id_fresh():
    # `fresh_id` skips the store's lookup: set by the client for ids it makes up, never by a
    # caller (a chosen id reused with it would be answered twice, and billed twice)
    from actors.caller.client import RouterClient

    client = RouterClient.__new__(RouterClient)  # `_request` builds a request, no Ray
    with pytest.raises(TypeError, match="fresh_id"):
        client._request("hi", request_id="order-9", fresh_id=True)
    made, _ = client._request("hi", request_id="order-9")
    assert not made.fresh_id and not made.new_id
