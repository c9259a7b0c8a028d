"""The run directory: parameters, results as Parquet parts, and a journal — what makes a
backtest resumable without losing, duplicating or paying twice for a bar.

    runs/<run_id>/
      params.json            defining parameters + their hash; a mismatch is refused
      results/part-00000.parquet ...   one row per (bar, task, policy), written atomically
      journal.log            "D key request_id time router" before each request is sent,
                             "F request_id" once its feedback was acknowledged
      report.md, report.html, *.png    written at the end (see report.py)

A part file is written to a temporary name and renamed, so a kill leaves either a whole
part or none (stray temporaries are ignored). Results of bars finished but not yet in a
part when the process died are not lost: the journal names their request ids, and the
tracker's audit trail has their answers (see `recover.py`). Keys are unique per run, and
duplicates across parts (impossible unless files are copied around) are dropped on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from actors.backtest.spec import BacktestError

SCHEMA = pa.schema([
    ("run_id", pa.string()), ("key", pa.string()), ("request_id", pa.string()),
    ("symbol", pa.string()), ("timeframe", pa.string()), ("ts", pa.timestamp("us")),
    ("bar", pa.int64()), ("task", pa.string()), ("policy", pa.string()),
    ("regime", pa.string()), ("close", pa.float64()), ("fwd_return", pa.float64()),
    ("ok", pa.bool_()), ("error_class", pa.string()), ("error", pa.string()),
    ("provider", pa.string()), ("model", pa.string()), ("tried", pa.string()),
    ("attempts", pa.int64()), ("input_tokens", pa.int64()), ("output_tokens", pa.int64()),
    ("cost_usd", pa.float64()), ("latency_s", pa.float64()), ("attempt_latency_s", pa.float64()),
    ("direction", pa.string()), ("confidence", pa.float64()),
    ("risk_score", pa.float64()), ("stop_distance", pa.float64()),
    ("answer", pa.string()), ("score", pa.float64()),
    ("done_at", pa.float64()), ("recovered", pa.bool_()), ("planner_node", pa.string()),
    # answered from the response cache (parts written before it read as null)
    ("cached", pa.bool_()), ("saved_usd", pa.float64()),
])
COLUMNS = SCHEMA.names


class Sent(NamedTuple):
    """A journal entry: one request sent for a key."""

    request_id: str
    at: float  # unix time it was sent
    router: str  # id of the router actor it was sent to


def fingerprint(defining: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and \
            all(isinstance(x, dict) for x in old + new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in _diff(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} → {new!r}"]


class RunStore:
    """One run directory. Not thread-safe: the runner's event loop owns it."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = run_id
        self.dir = Path(root) / run_id
        self.parts = self.dir / "results"
        self._buffer: list[dict[str, Any]] = []
        self._journal = None
        self._next_part = 0
        self._last_flush = time.monotonic()

    # -- parameters -------------------------------------------------------------------

    def claim(self, defining: dict[str, Any]) -> bool:
        """Create the run, or check an existing one has the same parameters.

        Returns True when the run already existed (a resume). Raises BacktestError naming
        the differences when the run id belongs to other parameters.
        """
        path = self.dir / "params.json"
        digest = fingerprint(defining)
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise BacktestError(f"{path}: unreadable ({exc}); remove the run directory or "
                                    "use another --run-id") from None
            if old.get("fingerprint") != digest:
                diffs = _diff(old.get("params", {}), defining) or ["(hash differs)"]
                raise BacktestError(
                    f"run id {self.run_id!r} belongs to different parameters ({path}):\n  "
                    + "\n  ".join(diffs[:12])
                    + "\nuse the same parameters to resume it, or another --run-id")
            return True
        self.parts.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_id": self.run_id, "fingerprint": digest,
                                   "created": time.time(), "params": defining}, indent=2,
                                  default=str))
        os.replace(tmp, path)
        return False

    # -- results ----------------------------------------------------------------------

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet"))

    def load(self) -> pd.DataFrame:
        """Every stored result row (empty frame with the schema if none)."""
        files = self.part_files()
        if files:
            self._next_part = max(int(f.stem.split("-")[1]) for f in files) + 1
            df = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files]).to_pandas()
            return df.drop_duplicates("key", keep="first").reset_index(drop=True)
        return SCHEMA.empty_table().to_pandas()

    def add(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def due(self, rows: int = 500, seconds: float = 5.0) -> bool:
        return bool(self._buffer) and (len(self._buffer) >= rows or
                                       time.monotonic() - self._last_flush >= seconds)

    def flush(self) -> Path | None:
        """Write buffered rows as the next part file (temp + rename: all or nothing)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return None
        self.parts.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in self._buffer],
                                     schema=SCHEMA)
        final = self.parts / f"part-{self._next_part:05d}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self._next_part += 1
        self._buffer.clear()
        return final

    # -- journal ----------------------------------------------------------------------

    def _j(self):
        if self._journal is None:
            path = self.dir / "journal.log"
            torn = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self._journal = open(path, "a", encoding="utf-8")  # noqa: SIM115
            if torn:  # a kill mid-line: end it, or our first line would be glued onto it
                self._journal.write("\n")
        return self._journal

    def dispatched(self, key: str, request_id: str, router: str = "") -> None:
        """Written (to the OS) before the request is sent, so a kill cannot hide it; with
        the time and the router actor it went to (was it perhaps still in flight?)."""
        j = self._j()
        j.write(f"D\t{key}\t{request_id}\t{time.time():.3f}\t{router}\n")
        j.flush()

    def feedback_sent(self, request_id: str) -> None:
        j = self._j()
        j.write(f"F\t{request_id}\n")
        j.flush()

    def read_journal(self) -> tuple[dict[str, list[Sent]], set[str]]:
        """({key: requests in the order sent}, {request ids with acknowledged feedback});
        a torn last line from a kill is ignored."""
        sent: dict[str, list[Sent]] = {}
        fed: set[str] = set()
        path = self.dir / "journal.log"
        if not path.exists():
            return sent, fed
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # [-1]: unterminated
            parts = line.split("\t")
            if parts[0] == "D" and len(parts) == 5 and parts[2]:
                try:
                    at = float(parts[3])
                except ValueError:
                    continue
                sent.setdefault(parts[1], []).append(Sent(parts[2], at, parts[4]))
            elif parts[0] == "F" and len(parts) == 2 and parts[1]:
                fed.add(parts[1])
        return sent, fed

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)
