"""API keys: the one place a provider's key is read, and what follows from it.

The provider actor asks `availability()` in its own process — the environment its HTTP client
will really use — and everyone else (the driver that started it, the router, a Serve replica)
learns the answer from the actor. A driver and a detached actor can therefore never disagree
about whether a provider is real, simulated or unusable.

Real or simulated is never decided by a key's absence: the simulator answers only when the
configuration chose it for every provider (`simulator.mode: always`, `--simulate`,
`connect(simulate=True)`). Without that choice, a provider whose key variable is unset is
unusable: start-up fails naming it and its variable, or — for a provider marked `optional` —
it is left out with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from actors.config import ConfigError, ProviderSpec
from actors.core.snapshot import Snapshot

#: How to choose the simulator, quoted by every message that refuses to use it implicitly.
HOW_TO_SIMULATE = ("`llm-router serve --simulate` / `llm-router backtest --simulate`, "
                   "`connect(simulate=True)`, or `simulator.mode: always` in the config")


class Availability(BaseModel):
    """What a provider actor found when it read its key (sent to whoever started it)."""

    model_config = ConfigDict(frozen=True)

    provider: str = Field(description="Configured provider name.")
    simulated: bool = Field(description="Answered by the built-in simulator.")
    key_env: str = Field(description="The variable the key is read from.")
    missing_key: bool = Field(False, description="Real provider whose key variable is unset.")
    optional: bool = Field(False, description="May be left out when its key is missing.")
    host: str = Field("", description="Host name of the process that read the key.")

    @property
    def usable(self) -> bool:
        return self.simulated or not self.missing_key


def availability(spec: ProviderSpec, simulate: bool) -> Availability:
    """Read `spec`'s key from this process's environment and say what that means."""
    missing = not simulate and not os.environ.get(spec.api_key_env)
    return Availability(provider=spec.name, simulated=simulate, key_env=spec.api_key_env,
                        missing_key=missing, optional=spec.optional, host=os.uname().nodename)


class MissingKeys(ConfigError):
    """Real providers whose key variable is unset where their actors run."""

    def __init__(self, missing: list[Availability]) -> None:
        self.missing = missing
        names = "; ".join(f"provider {a.provider}: ${a.key_env} is not set" for a in missing)
        super().__init__(
            f"{names} (read by the provider actors on {missing[0].host}; Ray workers inherit "
            "the environment of `ray start` or of the process that started local Ray). "
            f"Set the variable, mark the provider `optional: true` to run without it, or, "
            f"to try the router without any keys, use the built-in simulator: {HOW_TO_SIMULATE}.")


def left_out_warning(left_out: list[Availability]) -> str:
    names = ", ".join(f"{a.provider} (${a.key_env} unset)" for a in left_out)
    return f"optional providers left out, their keys are missing: {names}"


SIMULATED_WARNING = ("SIMULATED: every provider is answered by the built-in simulator — the "
                     "answers are made up, not model output. Each one says so (header "
                     "x-router-simulated: true, trace.simulated, audit column `simulated`).")


#: Why a simulated provider is not tried next to real ones.
NEVER_MIX = ("simulated: never tried when real providers are configured (a fallback never "
             "crosses from real answers to made-up ones)")


def never_mix(snapshots: Iterable[Snapshot]) -> dict[str, str]:
    """Providers to exclude so one request never falls back from a real provider to a
    simulated one. Start-up already refuses to mix them; this holds whatever happens."""
    snaps = list(snapshots)
    if all(s.simulated for s in snaps) or not any(s.simulated for s in snaps):
        return {}
    return {s.name: NEVER_MIX for s in snaps if s.simulated}
