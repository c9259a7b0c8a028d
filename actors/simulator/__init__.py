"""Built-in provider simulator: one loopback HTTP server speaking the Anthropic, OpenAI and
Gemini wire formats, with per-model latency, faults and limits. Used by the demo, every test
and the benchmarks in place of the real APIs."""

from actors.simulator.profiles import DEFAULT_PROFILES, Profile
from actors.simulator.server import SimulatorProcess, serve, simulator_base_url
from actors.simulator.stats import ModelStats, Stats

__all__ = [
    "DEFAULT_PROFILES",
    "ModelStats",
    "Profile",
    "SimulatorProcess",
    "Stats",
    "serve",
    "simulator_base_url",
]
