"""The router's links to its provider actors: a Ray handle and a channel pool for each,
resolved on first use and re-resolved after a call found the actor gone (Ray may have
replaced it). One place for that rule, for plain and streamed calls alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ray

from actors.rpc.channel import ChannelBroken, ChannelPool
from actors.rpc.messages import ProviderCall, ProviderReply
from actors.shells.router_metrics import at_provider
from actors.shells.tracker import NAMESPACE


def provider_actor_name(name: str) -> str:
    return f"provider:{name}"


class ProviderLinks:
    """Handles and channel pools by provider name."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}
        self._pools: dict[str, ChannelPool] = {}

    def handle(self, name: str) -> Any:
        h = self._handles.get(name)
        if h is None:
            h = self._handles[name] = ray.get_actor(provider_actor_name(name),
                                                    namespace=NAMESPACE)
        return h

    def forget(self, name: str) -> None:
        """Resolve the actor again on the next call."""
        self._handles.pop(name, None)

    def pool(self, name: str) -> ChannelPool:
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = ChannelPool(lambda: self.handle(name), f"provider:{name}")
        return pool

    def _lost(self, name: str, pool: ChannelPool) -> None:
        self.forget(name)  # re-resolve: it may have been replaced
        pool.reset()

    async def call(self, name: str, call: ProviderCall) -> ProviderReply:
        pool = self.pool(name)
        try:
            with at_provider():
                return await pool.call(call)
        except (ChannelBroken, ray.exceptions.RayActorError):
            self._lost(name, pool)
            raise

    async def stream(self, name: str, call: ProviderCall) -> AsyncIterator[Any]:
        """One provider's streamed attempt(s): its events, then its ProviderReply."""
        pool = self.pool(name)
        try:
            async for item in pool.stream(call):
                yield item
        except (ChannelBroken, ray.exceptions.RayActorError):
            self._lost(name, pool)
            raise

    def counts(self) -> dict[str, dict[str, int]]:
        """Logical calls vs socket and Ray calls per provider channel (which path works)."""
        out: dict[str, dict[str, int]] = {}
        for name, pool in self._pools.items():
            for c in list(pool._by_loop.values()):
                agg = out.setdefault(name, dict.fromkeys(c.counts, 0))
                for k, v in c.counts.items():
                    agg[k] += v
        return out
