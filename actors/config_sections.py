"""The config sections whose models live in modules that themselves import actors/config.py
(the router, the tracker, the endpoint, the idempotency book, the response cache): typed in
`Config` all the same, each model looked up when `Config`'s validator is first built."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import CoreSchema


class _Section:
    """A config section whose model lives in a module that itself imports this one (the
    router, the tracker, the endpoint): the model is looked up when `Config`'s validator is
    first built, so a bad key still fails at load, with its full path, and `Config` holds
    the typed section."""

    def __init__(self, model: Callable[[], type[BaseModel]]) -> None:
        self.model = model

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return handler.generate_schema(self.model())


def _router_spec() -> type[BaseModel]:
    from actors.routing.router_spec import RouterSpec

    return RouterSpec


def _tracker_spec() -> type[BaseModel]:
    from actors.shells.tracker import TrackerSpec

    return TrackerSpec


def _serve_spec() -> type[BaseModel]:
    from serve.spec import ServeSpec

    return ServeSpec


def _idempotency_spec() -> type[BaseModel]:
    from actors.stores.idempotency import IdempotencySpec

    return IdempotencySpec


def _cache_spec() -> type[BaseModel]:
    from actors.stores.response_cache import CacheSpec

    return CacheSpec


if TYPE_CHECKING:
    from actors.routing.router_spec import RouterSpec
    from actors.shells.tracker import TrackerSpec
    from actors.stores.idempotency import IdempotencySpec
    from actors.stores.response_cache import CacheSpec
    from serve.spec import ServeSpec

    RouterSection, TrackerSection, ServeSection = RouterSpec, TrackerSpec, ServeSpec
    IdempotencySection, CacheSection = IdempotencySpec, CacheSpec
else:
    RouterSection = Annotated[Any, _Section(_router_spec)]
    TrackerSection = Annotated[Any, _Section(_tracker_spec)]
    ServeSection = Annotated[Any, _Section(_serve_spec)]
    IdempotencySection = Annotated[Any, _Section(_idempotency_spec)]
    CacheSection = Annotated[Any, _Section(_cache_spec)]
