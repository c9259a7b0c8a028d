"""Calls to the router's and tracker's actors that raise the callee's own error.

Ray wraps an exception raised inside an actor method in a RayTaskError; callers of the
Python API want the router's `RoutingError` or the tracker's `ValueError` itself.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.core.errors import task_cause


def get(ref: Any, timeout: float | None = None) -> Any:
    """`ray.get`, raising the callee's own error rather than Ray's wrapper."""
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        raise task_cause(exc) from None


async def aget(ref: Any) -> Any:
    """The async twin of `get`."""
    try:
        return await ref
    except ray.exceptions.RayTaskError as exc:
        raise task_cause(exc) from None
