"""The progress line: done/total, throughput, ETA, spend so far and failures by class.

On a terminal it is one line rewritten in place; otherwise (CI logs, files) a plain line
every `every_s` seconds. `Progress` is pure apart from `show()`; the clock is passed in.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from typing import TextIO


def _duration(s: float) -> str:
    if s != s or s == float("inf"):  # NaN or inf
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


class Progress:
    def __init__(self, total: int, *, already: int = 0, stream: TextIO | None = None,
                 every_s: float | None = None, enabled: bool = True, clock=time.monotonic) -> None:
        self.total = total
        self.done = already
        self.already = already
        self.spend = 0.0
        self.ok = 0
        self.cached = 0  # answered from the response cache
        self.saved = 0.0
        self.failures: Counter[str] = Counter()
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 10.0)
        self.enabled = enabled
        self._clock = clock
        self.started = clock()
        self._last_show = -1e18
        self._recent: deque[float] = deque(maxlen=200)  # completion times, for the rate
        self.batch: dict[str, tuple[int, int, int]] = {}  # provider → (sent, running, done)

    def update(self, ok: bool, cost_usd: float, error_class: str | None = None) -> None:
        self.done += 1
        self.spend += cost_usd
        now = self._clock()
        self._recent.append(now)
        if ok:
            self.ok += 1
        else:
            self.failures[error_class or "unknown"] += 1
        if now - self._last_show >= self.every_s:
            self.show(now)

    def hit(self, saved_usd: float) -> None:
        """Count an answer from the response cache (call before `update`)."""
        self.cached += 1
        self.saved += saved_usd

    def batches(self, status: dict[str, tuple[int, int, int]]) -> None:
        """Batch mode: items submitted / in progress / done per provider; shown when due
        (jobs can run for hours without a bar finishing)."""
        self.batch = dict(status)
        now = self._clock()
        if now - self._last_show >= self.every_s:
            self.show(now)

    def note(self, label: str) -> None:
        """Count a failure that did not finish a bar (e.g. retried later)."""
        self.failures[label] += 1

    def rate(self, now: float | None = None) -> float:
        """Completions per second over the recent ones (the whole run while it is short)."""
        now = self._clock() if now is None else now
        if len(self._recent) >= 2 and self._recent[-1] > self._recent[0]:
            span = max(now, self._recent[-1]) - self._recent[0]
            return (len(self._recent) - 1) / span if span > 0 else 0.0
        new = self.done - self.already
        return new / (now - self.started) if now > self.started and new else 0.0

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        rate = self.rate(now)
        left = self.total - self.done
        eta = left / rate if rate > 0 else float("inf") if left else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        fails = " ".join(f"{k}={v}" for k, v in sorted(self.failures.items())) or "none"
        return (f"[{self.done}/{self.total} {pct:5.1f}%] {rate:6.1f} req/s  "
                f"ETA {_duration(eta)}  elapsed {_duration(now - self.started)}  "
                f"spend ${self.spend:.4f}  "
                + (f"cached {self.cached} (saved ${self.saved:.4f})  " if self.cached else "")
                + "".join(f"batch {p}: {s} submitted/{r} in progress/{d} done  "
                          for p, (s, r, d) in self.batch.items())
                + f"failed: {fails}")

    def show(self, now: float | None = None, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock() if now is None else now
        self._last_show = now
        text = self.line(now)
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
