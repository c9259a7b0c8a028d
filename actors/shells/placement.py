"""Where the stateful actors (tracker, router) run: on the head node by default.

Their files (the SQLite audit trail, the router's journal and budget override) live on the
node that runs them. Left to Ray, a restart after losing a node could land them on another
node with an empty state directory: budgets re-seeded from nothing, the audit trail split
in two. The head node is the one node a Ray cluster cannot lose and keep running, so they
ask for a sliver of the resource only the head advertises — the same way Ray Serve pins
its controller. The `placement:` config section overrides it: `state_node: any`, or a
custom resource / node labels of the node that should hold the state.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The resource only the head node has (ray._common.constants.HEAD_NODE_RESOURCE_NAME).
HEAD_RESOURCE = "node:__internal_head__"
#: Asked for by each pinned actor: any amount above zero pins without using it up.
SLIVER = 0.001


class PlacementSpec(BaseModel):
    """The `placement:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_node: Literal["head", "any"] = Field(
        "head", description="head: tracker and router on the head node; any: wherever Ray "
        "puts them (they still restart elsewhere only if their node is lost).")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Instead of the head: custom resources the state "
        "node advertises (`ray start --resources='{\"llm_router_state\": 1}'`) and the "
        f"amount each actor asks for, e.g. {{llm_router_state: {SLIVER}}}.")
    label_selector: dict[str, str] = Field(
        default_factory=dict, description="Instead of the head: node labels the state node "
        "has (`ray start --labels='{\"role\": \"state\"}'`).")

    @field_validator("resources")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if amount <= 0:
                raise ValueError(f"{name}: must be above 0, got {amount}")
        return v

    @model_validator(mode="after")
    def _one_choice(self) -> PlacementSpec:
        if self.state_node == "any" and (self.resources or self.label_selector):
            raise ValueError("state_node 'any' contradicts resources / label_selector: "
                             "set one or the other")
        return self

    @property
    def pinned_to(self) -> str:
        """For people: where the state lives."""
        if self.resources or self.label_selector:
            parts = [*(f"resource {k}" for k in self.resources),
                     *(f"label {k}={v}" for k, v in self.label_selector.items())]
            return "the node with " + " and ".join(parts)
        return "the head node" if self.state_node == "head" else "any node"

    def actor_options(self) -> dict[str, Any]:
        """`.options(...)` for a stateful actor."""
        opts: dict[str, Any] = {}
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.label_selector:
            opts["label_selector"] = dict(self.label_selector)
        if not opts and self.state_node == "head":
            opts["resources"] = {HEAD_RESOURCE: SLIVER}
        return opts


def state_actor_options(config: Any) -> dict[str, Any]:
    """The options for the tracker and router under `config` (a Config, or anything else:
    then the default, the head node)."""
    spec = getattr(config, "placement", None)
    return (spec if isinstance(spec, PlacementSpec) else PlacementSpec()).actor_options()
