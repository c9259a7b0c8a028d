"""Report plots without Ray: a hand-made results frame."""

from __future__ import annotations

import matplotlib.axes
import pandas as pd

from actors.backtest import report


def _frame() -> pd.DataFrame:
    rows = []
    for i in range(40):
        pol = "cost-aware" if i % 2 else "latency-aware"
        # The two policies use different subsets, in a different order of first use.
        prov = ["llama", "mixtral"][i % 4 // 2] if pol == "cost-aware" else ["gpt-4-turbo", "llama"][i % 4 // 2]
        rows.append({"policy": pol, "provider": prov, "ok": True, "cost_usd": 0.001,
                     "done_at": 1000.0 + i, "ts": pd.Timestamp("2024-01-01") + pd.Timedelta(days=i),
                     "regime": "bull", "score": float(i % 3 == 0), "latency_s": 0.5})
    return pd.DataFrame(rows)


def test_provider_mix_colours_a_provider_the_same_in_every_subplot(tmp_path, monkeypatch):
    seen: list[tuple[list[str], list]] = []
    real = matplotlib.axes.Axes.stackplot

    def spy(self, x, *args, labels=(), colors=None, **kw):
        seen.append((list(labels), list(colors or [])))
        return real(self, x, *args, labels=labels, colors=colors, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "stackplot", spy)
    files = report.plots(_frame(), tmp_path)
    assert files["provider_mix"].stat().st_size > 0
    assert len(seen) == 2
    colour_of = [dict(zip(labels, colours, strict=True)) for labels, colours in seen]
    assert colour_of[0]["llama"] == colour_of[1]["llama"]
    assert set(colour_of[0]) == set(colour_of[1]) == {"gpt-4-turbo", "llama", "mixtral"}
