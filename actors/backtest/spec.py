"""What a backtest is asked to do: the parameters that define a run, validated at the door.

They cross boundaries (CLI → runner → `params.json` in the run directory → planning tasks
on other nodes), so they are pydantic models. Operational knobs that do not change a bar's
answer (timeout, in-flight window, where runs live) are kept apart from the *defining*
parameters, because only the latter decide whether a run id may be resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.policy.policies import POLICIES
from prompts import TASKS
from prompts.context import TIMEFRAMES

RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$"
SAMPLE_PREFIX = "sample:"
#: The bundled real samples (see `prompts.load_sample`) and the symbol each one holds.
SAMPLE_SYMBOLS: dict[str, str] = {"sp500": "SPX", "nasdaq": "IXIC"}


class BacktestError(ValueError):
    """The run cannot start as asked (bad parameters, or a run id used for other ones);
    raised before anything is sent to a provider."""


class SeriesSpec(BaseModel):
    """One OHLCV series: where the bars come from, which instrument and bar size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        "sample:sp500",
        description="A CSV or Parquet path, or sample:sp500 / sample:nasdaq (bundled real data).")
    symbol: str | None = Field(
        None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9^._:/-]+$",
        description="Instrument. Picks rows of a file with a `symbol` column; for a sample it "
                    "must be the sample's own (SPX, IXIC); default: the sample's or file stem.")
    timeframe: str = Field("1d", description="Bar size, one of prompts.TIMEFRAMES.")

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, v: str) -> str:
        if v not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {v!r}; one of {list(TIMEFRAMES)}")
        return v

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v.startswith(SAMPLE_PREFIX):
            name = v.removeprefix(SAMPLE_PREFIX)
            if name not in SAMPLE_SYMBOLS:
                raise ValueError(f"unknown sample {name!r}; one of "
                                 f"{[SAMPLE_PREFIX + s for s in SAMPLE_SYMBOLS]}")
        elif Path(v).suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ValueError(f"{v!r}: expected a .csv or .parquet file, or sample:NAME")
        return v

    @property
    def sample(self) -> str | None:
        return self.source.removeprefix(SAMPLE_PREFIX) if self.source.startswith(SAMPLE_PREFIX) else None

    @property
    def name(self) -> str:
        """The symbol this series will carry (explicit, the sample's, or the file's stem)."""
        if self.symbol:
            return self.symbol
        if self.sample:
            return SAMPLE_SYMBOLS[self.sample]
        return Path(self.source).stem.upper()


def _known(values: list[str], registry: Any, what: str) -> list[str]:
    """Every name must be in the registry; duplicates collapse, order kept."""
    for v in values:
        if v not in registry:
            raise ValueError(f"unknown {what} {v!r}; one of {sorted(registry)}")
    return list(dict.fromkeys(values))


class BacktestSpec(BaseModel):
    """A backtest run. Defining parameters are hashed into `params.json`; a run id
    re-used with different ones is refused before any spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str | None = Field(
        None, pattern=RUN_ID,
        description="Names runs/<run_id>/; default bt-<hash of the parameters>, so repeating a "
                    "command resumes it.")
    series: list[SeriesSpec] = Field(default_factory=lambda: [SeriesSpec()], min_length=1)
    start: str | None = Field(None, description="First bar to analyse (inclusive); earlier bars "
                                                "still feed the indicators' warm-up.")
    end: str | None = Field(None, description="Last bar to analyse (inclusive).")
    limit: int | None = Field(None, gt=0, description="At most this many bars per series, "
                                                      "oldest first from `start`.")
    tasks: list[str] = Field(default_factory=lambda: ["analysis"], min_length=1,
                             description="Prompt tasks per bar: analysis, pattern, risk.")
    policies: list[str] = Field(default_factory=lambda: ["accuracy-first"], min_length=1,
                                description="Each bar is routed once per policy (a comparison).")
    horizon: int = Field(5, ge=1, le=500, description="Bars after the signal its outcome is "
                                                      "judged on.")
    flat_threshold: float = Field(0.01, gt=0, lt=1, description="A flat call is right when "
                                  "|forward return| stays below this.")
    max_tokens: int = Field(512, gt=0, description="Output cap per answer.")
    assign: Literal["policy", "rate-share"] = Field(
        "policy", description="policy: the router's policy picks each provider. rate-share: the "
        "runner pins bars to providers in proportion to their rpm (others as fallbacks), to use "
        "every provider's rate limit for throughput-bound jobs.")
    # -- operational: not part of the run's identity --------------------------------------
    runs_dir: Path = Field(Path("runs"), description="Where run directories are created.")
    timeout: float = Field(300.0, gt=0, le=3600, description="Per-request deadline, seconds.")
    inflight: int | None = Field(None, gt=0, description="In-flight window; default from the "
                                 "providers' rate limits × latency.")
    feedback: bool = Field(True, description="Send realized outcomes to the tracker.")
    chunk_bars: int = Field(512, ge=16, description="Bars per planning chunk.")
    planning: Literal["auto", "driver", "cluster"] = Field(
        "auto", description="Where prompts are built: Ray tasks spread over the nodes "
        "(cluster), a driver thread (driver), or cluster only when there are several nodes.")
    part_rows: int = Field(500, ge=1, description="Results per Parquet part (also written "
                           "every 5 s), i.e. at most this many rebuilt from the audit on resume.")
    bar_retries: int = Field(3, ge=0, le=10, description="Retries of a bar whose request failed "
                             "without spending (breakers open, router unreachable).")
    cache: Literal["both", "off", "only"] = Field(
        "both", description="The response cache: both (default: a request answered before, "
        "in any run, is not paid again), off (--no-cache), only (--cache-only: replay, "
        "calling no provider; a bar without a cached answer fails with cache_miss).")
    grace_s: float = Field(30.0, ge=0, le=600, description="On Ctrl-C: how long to wait for "
                           "the answers in flight (they are paid for) before stopping.")
    batch: bool = Field(False, description="Send bars as provider batch jobs (about half "
                        "the price, answers within 24 h) to providers with a batch API "
                        "(config batch_discount); bars routed elsewhere go synchronously "
                        "(actors/backtest/batch_run.py).")
    batch_size: int = Field(1000, ge=1, le=50_000, description="Most items in one batch job.")
    batch_poll_s: float = Field(30.0, gt=0, le=3600, description="Seconds between polls of "
                                "the submitted batch jobs.")
    batch_retries: int = Field(2, ge=0, le=10, description="Times an item that failed "
                               "transiently (expired, server error) goes into a later batch "
                               "before it is sent synchronously.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        return _known(v, TASKS, "task")

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, v: list[str]) -> list[str]:
        return _known(v, POLICIES, "policy")

    @model_validator(mode="after")
    def _batch_by_policy(self) -> BacktestSpec:
        if self.batch and self.assign == "rate-share":
            raise ValueError("batch mode sends each bar where the policy chooses; "
                             "assign: rate-share spreads bars for throughput — choose one")
        return self

    @model_validator(mode="after")
    def _distinct_series(self) -> BacktestSpec:
        seen: set[tuple[str, str]] = set()
        for s in self.series:
            key = (s.name, s.timeframe)
            if key in seen:
                raise ValueError(f"series {s.name} {s.timeframe} is given twice")
            seen.add(key)
        return self

    def defining(self) -> dict[str, object]:
        """The parameters that decide every bar's request and score (JSON-ready)."""
        keep = ("start", "end", "limit", "tasks", "policies", "horizon", "flat_threshold",
                "max_tokens", "assign")
        return self.model_dump(mode="json", include=set(keep))
