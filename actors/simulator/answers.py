"""What a simulated model says: a trade signal or a risk assessment as JSON text.

The answer leans on what the prompt says (regime, price, timeframe) plus the model's
profile and randomness, so routing and aggregation code sees models that differ and
disagree, but in a reproducible way when the simulator is seeded.
"""

from __future__ import annotations

import json
import math
import random
import re

from actors.simulator.profiles import Profile

_REGIME = re.compile(r"regime\W{0,4}(bull|bear|side|range|chop|volatile)", re.IGNORECASE)
_PRICE = re.compile(r"\b(?:close|price|last|entry)\b\W{0,4}(\d{1,7}(?:\.\d+)?)", re.IGNORECASE)
_TIMEFRAME = re.compile(r"\b(?:timeframe|horizon)\W{0,4}([A-Za-z0-9-]{1,12})", re.IGNORECASE)

_WHY = {
    "long": "Trend and momentum point up; pullbacks are being bought.",
    "short": "Lower highs and weakening momentum; sellers control rallies.",
    "flat": "Signals conflict and the edge is too small to act on.",
}
_PROSE = (
    "Looking at the recent price action, I would lean cautiously constructive, but the "
    "picture is mixed and I would rather wait for confirmation before committing capital. "
    "Keep position sizes modest and watch the key levels."
)


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: about four characters a token, like the usual rule of thumb."""
    return math.ceil(len(text) / 4)


def truncate(text: str, max_tokens: int | None) -> tuple[str, int, bool]:
    """Cut text to ``max_tokens``; returns (text, output tokens, truncated?)."""
    tokens = count_tokens(text)
    if max_tokens is None or tokens <= max_tokens:
        return text, tokens, False
    return text[: max_tokens * 4], max_tokens, True


def answer(prompt: str, profile: Profile, rng: random.Random) -> str:
    """The model's natural (untruncated) answer text for this prompt."""
    lean = profile.bias
    regime_m = _REGIME.search(prompt)
    regime = regime_m.group(1).lower() if regime_m else ""
    if regime == "bull":
        lean += 0.6
    elif regime == "bear":
        lean -= 0.6
    price_m = _PRICE.search(prompt)
    price = float(price_m.group(1)) if price_m else None
    if "RiskAssessment" in prompt:
        obj = _risk(lean, price, profile, rng)
    else:
        tf = _TIMEFRAME.search(prompt)
        obj = _signal(lean, regime, price, tf.group(1) if tf else "1d", profile, rng)
    text = json.dumps(obj)
    if profile.fence_prob and rng.random() < profile.fence_prob:
        return f"```json\n{text}\n```"
    return text


def prose() -> str:
    """An answer with no JSON in it at all (the ``invalid_output`` fault)."""
    return _PROSE


def _confidence(profile: Profile, rng: random.Random) -> float:
    c = rng.gauss(profile.confidence_mean, profile.confidence_spread)
    return round(min(0.99, max(0.01, c)), 2)


def _signal(
    lean: float,
    regime: str,
    price: float | None,
    horizon: str,
    profile: Profile,
    rng: random.Random,
) -> dict:
    score = lean + rng.gauss(0.0, 0.5)
    direction = "long" if score > 0.25 else "short" if score < -0.25 else "flat"
    confidence = _confidence(profile, rng)
    entry = stop = take = None
    if direction != "flat" and price is not None:
        sign = 1.0 if direction == "long" else -1.0
        risk = price * rng.uniform(0.01, 0.03)
        entry = round(price, 4)
        stop = round(price - sign * risk, 4)
        take = round(price + sign * risk * rng.uniform(1.5, 3.0), 4)
    else:
        confidence = round(confidence * 0.8, 2) if direction == "flat" else confidence
    why = _WHY[direction]
    if regime:
        why = f"{regime.capitalize()} regime. {why}"
    return {
        "direction": direction,
        "confidence": confidence,
        "entry": entry,
        "stop": stop,
        "take_profit": take,
        "horizon": horizon,
        "rationale": why,
    }


def _risk(lean: float, price: float | None, profile: Profile, rng: random.Random) -> dict:
    risk = min(1.0, max(0.0, rng.gauss(0.45 - 0.2 * lean, 0.12)))
    warnings = []
    if risk > 0.6:
        warnings.append("Elevated volatility: reduce size.")
    if lean < -0.3:
        warnings.append("Bearish regime: long exposure is against the trend.")
    if price is None:
        warnings.append("No reference price in the prompt; stop distance is a fraction.")
    stop_frac = rng.uniform(0.01, 0.04)
    return {
        "risk_score": round(risk, 3),
        "max_position_size": round(max(0.0, (1.0 - risk) * 0.2), 4),
        "stop_distance": round(price * stop_frac if price is not None else stop_frac, 4),
        "warnings": warnings,
    }
