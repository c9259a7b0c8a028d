"""Outcome tables with known answers, shaped like real per-prompt benchmark outcomes.

Two providers about 14× apart in price; ~10k prompts in several dozen task categories of
100–1,500 prompts; the strong one right on ~80 %, the cheap one on ~68 %; per category the
strong one's lead runs from −30 to +40 points (median +10); prompt lengths vary by category
and within it. Outcomes of one prompt are correlated across providers (a latent difficulty),
as they are on real benchmarks. A drift variant makes one provider 20 points worse in one
category for the middle of the stream, then recovers. The per-category accuracies used are
returned with the table, so tests know the right answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np
import pandas as pd

from actors.config import ProviderSpec
from actors.evaluate.mmlu import catalog

STRONG, CHEAP = "strong", "cheap"


@dataclass(frozen=True)
class Drift:
    """`provider` loses `drop` of accuracy in `category` between two points of the stream
    (fractions of that category's requests), then recovers."""

    provider: str = CHEAP
    category: str | None = None  # None: the largest category
    drop: float = 0.20
    start: float = 0.35
    end: float = 0.70


@dataclass(frozen=True)
class Shape:
    prompts: int = 10_000
    categories: int = 40
    min_size: int = 100
    max_size: int = 1500
    strong_accuracy: float = 0.80
    cheap_accuracy: float = 0.68
    lead_median: float = 0.10
    lead_spread: float = 0.12
    lead_min: float = -0.30
    lead_max: float = 0.40
    tokens_median: float = 600.0
    tokens_between: float = 0.8  # lognormal sigma of category medians
    tokens_within: float = 0.5  # lognormal sigma within a category
    output_tokens: float = 150.0
    correlation: float = 0.35  # latent difficulty shared by the providers
    price_ratio: float = 14.0
    drift: Drift | None = None
    names: tuple[str, str] = field(default=(STRONG, CHEAP))
    #: Named categories with fixed sizes and typical prompt tokens (e.g. MMLU's subjects);
    #: replaces `prompts`, `categories`, the random sizes and the random token medians.
    catalog: tuple[tuple[str, int, float], ...] | None = None
    difficulty_spread: float = 0.09  # sd of the categories' mean accuracy


MMLU = Shape(catalog=catalog(), output_tokens=40.0, correlation=0.45, tokens_within=0.45,
             difficulty_spread=0.10)


SHAPES: dict[str, Shape] = {
    "default": Shape(),
    "drift": Shape(drift=Drift()),
    "many": Shape(prompts=12_000, categories=60, min_size=100, max_size=900),
    "narrow": Shape(lead_spread=0.08, lead_min=-0.15, lead_max=0.30),
    "long-prompts": Shape(tokens_median=2500.0, tokens_between=1.1),
    "small": Shape(prompts=3000, categories=15, min_size=60, max_size=600),
    "small-drift": Shape(prompts=4000, categories=10, min_size=100, max_size=1200,
                         drift=Drift()),
    # MMLU's 57 subjects (sizes and prompt lengths of its test split, actors/evaluate/mmlu.py)
    "mmlu": MMLU,
    "mmlu-narrow": replace(MMLU, lead_spread=0.08, lead_min=-0.15, lead_max=0.30),
    # a subject of typical prompt length, so losing 20 points there is worth a switch
    "mmlu-drift": replace(MMLU, drift=Drift(category="moral_scenarios")),
}


@dataclass
class Generated:
    table: pd.DataFrame  # request_id, task, prompt_tokens, output_tokens, one column per provider
    accuracy: pd.DataFrame  # per category: size, and the true accuracy of each provider
    providers: list[ProviderSpec]
    drift: Drift | None


def providers(shape: Shape = Shape()) -> list[ProviderSpec]:
    """The two providers a generated table is priced with (ratio `shape.price_ratio`)."""
    strong, cheap = shape.names
    base = dict(api="openai", base_url="http://127.0.0.1:9", max_input_tokens=1_000_000,
                max_output_tokens=8192, rpm=100_000, tpm=100_000_000, max_concurrency=64)
    return [
        ProviderSpec(name=strong, model=f"{strong}-model", api_key_env="STRONG_API_KEY",
                     input_cost_per_mtok=2.50, output_cost_per_mtok=10.0, **base),
        ProviderSpec(name=cheap, model=f"{cheap}-model", api_key_env="CHEAP_API_KEY",
                     input_cost_per_mtok=2.50 / shape.price_ratio,
                     output_cost_per_mtok=10.0 / shape.price_ratio, **base),
    ]


def _sizes(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    raw = np.exp(rng.normal(0.0, 0.9, shape.categories))
    sizes = raw / raw.sum() * shape.prompts
    for _ in range(50):  # clip into [min, max] and rescale the free ones to keep the total
        sizes = np.clip(sizes, shape.min_size, shape.max_size)
        free = (sizes > shape.min_size) & (sizes < shape.max_size)
        gap = shape.prompts - sizes.sum()
        if abs(gap) < 1 or not free.any():
            break
        sizes[free] *= 1 + gap / sizes[free].sum()
    return np.maximum(np.round(sizes).astype(int), 1)


def _accuracies(shape: Shape, sizes: np.ndarray, rng: np.random.Generator,
                drift_at: int | None) -> tuple[np.ndarray, np.ndarray]:
    k = len(sizes)
    lead = np.clip(rng.normal(shape.lead_median, shape.lead_spread, k), shape.lead_min,
                   shape.lead_max)
    order = np.argsort(lead)
    lead[order[0]], lead[order[-1]] = shape.lead_min, shape.lead_max  # the range is reached
    mid = rng.normal((shape.strong_accuracy + shape.cheap_accuracy) / 2,
                     shape.difficulty_spread, k)
    w = sizes / sizes.sum()
    strong = mid + lead / 2
    cheap = mid - lead / 2
    for _ in range(20):  # shift so the stream-wide accuracies hit the shape's
        strong = np.clip(strong + shape.strong_accuracy - (w @ np.clip(strong, .03, .98)), -1, 2)
        cheap = np.clip(cheap + shape.cheap_accuracy - (w @ np.clip(cheap, .02, .97)), -1, 2)
    strong, cheap = np.clip(strong, 0.03, 0.98), np.clip(cheap, 0.02, 0.97)
    if drift_at is not None:  # where the cheap one carries the traffic before the drift
        cheap[drift_at] = strong[drift_at] - 0.02
    return strong, cheap


def generate(shape: Shape | str = "default", seed: int = 0) -> Generated:
    """A shuffled stream of prompts with each provider's outcome (0/1) per prompt."""
    if isinstance(shape, str):
        try:
            shape = SHAPES[shape]
        except KeyError:
            raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}") from None
    rng = np.random.default_rng(seed)
    if shape.catalog is not None:
        names = [name for name, _, _ in shape.catalog]
        sizes = np.array([n for _, n, _ in shape.catalog])
        medians = np.array([t for _, _, t in shape.catalog], dtype=float)
    else:
        names = [f"cat-{i:02d}" for i in range(shape.categories)]
        sizes = _sizes(shape, rng)
    k = len(sizes)
    drift = shape.drift
    where = None
    if drift is not None:
        if drift.category is None:
            where = int(np.argmax(sizes))
        elif drift.category in names:
            where = names.index(drift.category)
        else:
            raise ValueError(f"drift category {drift.category!r} is not one of the shape's")
        drift = replace(drift, category=names[where])
    p_strong, p_cheap = _accuracies(shape, sizes, rng, where)
    cat = np.repeat(np.arange(k), sizes)
    rng.shuffle(cat)
    n = len(cat)
    if shape.catalog is None:
        medians = np.exp(rng.normal(np.log(shape.tokens_median), shape.tokens_between, k))
        if where is not None:
            # typical prompts there, so losing 20 points is worth a switch at the usual
            # price of quality (with very long prompts the cheap one could stay the better buy)
            medians[where] = shape.tokens_median
    tokens = np.exp(rng.normal(np.log(medians[cat]), shape.tokens_within))
    tokens = np.clip(np.round(tokens), 20, 100_000).astype(int)
    out = np.clip(np.round(np.exp(rng.normal(np.log(shape.output_tokens), 0.4, n))), 1, 4000)
    strong_p, cheap_p = p_strong[cat].copy(), p_cheap[cat].copy()
    if drift is not None:
        rows = np.flatnonzero(cat == where)
        hit = rows[int(len(rows) * drift.start):int(len(rows) * drift.end)]
        target = strong_p if drift.provider == shape.names[0] else cheap_p
        target[hit] = np.clip(target[hit] - drift.drop, 0.0, 1.0)
    inv = np.vectorize(NormalDist().inv_cdf)
    latent = rng.normal(0, 1, n) * np.sqrt(shape.correlation)
    noise = np.sqrt(1 - shape.correlation)
    ok_strong = latent + noise * rng.normal(0, 1, n) < inv(np.clip(strong_p, 1e-6, 1 - 1e-6))
    ok_cheap = latent + noise * rng.normal(0, 1, n) < inv(np.clip(cheap_p, 1e-6, 1 - 1e-6))
    strong, cheap = shape.names
    table = pd.DataFrame({
        "request_id": [f"q{i:06d}" for i in range(n)],
        "task": np.array(names)[cat],
        "prompt_tokens": tokens,
        "output_tokens": out.astype(int),
        strong: ok_strong.astype(float),
        cheap: ok_cheap.astype(float),
    })
    accuracy = pd.DataFrame({"task": names, "size": sizes, strong: p_strong, cheap: p_cheap,
                             "lead": p_strong - p_cheap}).set_index("task")
    return Generated(table, accuracy, providers(shape), drift)
