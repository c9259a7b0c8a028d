"""What journaling one answer costs the router: the file journal vs the PostgreSQL journal,
side by side in one run, without Ray (the router-level figures: bench_router.py --postgres).

Arms, each over the same records (one request's attempt + request record):
  file        Journal.append (a write(2), no fsync): what the router does on one machine
  pg-sync     PgJournal.append + await synced(): an answer waiting for its group commit
              (router.journal_sync, the default with PostgreSQL; asynchronous commit)
  pg-fenced   the same, each commit checking the router's lease epoch in its statement
              (what a router with PostgreSQL runs: actors/stores/lease.py)
  pg-fsync    the same with synchronous_commit on: waiting for the server's WAL flush too
At concurrency 1 (sequential answers) and 32 (answers in flight together share commits).
A throwaway PostgreSQL server is started (tests/pg_server.py).

    .venv/bin/python scripts/bench_journal.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.core.records import AttemptRecord, RequestRecord  # noqa: E402
from actors.stores.journal import Journal  # noqa: E402
from actors.stores.lease import Lease, Role  # noqa: E402
from actors.stores.pg import PgSession, PgTarget  # noqa: E402
from actors.stores.pg_journal import PgJournal  # noqa: E402


def records(i: int) -> list:
    now = time.time()
    return [AttemptRecord(request_id=f"r{i}", attempt=1, ts=now, provider="claude",
                          model="claude-sonnet", ok=True, input_tokens=812, output_tokens=164,
                          cost_usd=0.0049, latency_s=0.8, prompt="p" * 600, response="a" * 400),
            RequestRecord(request_id=f"r{i}", ts=now, ok=True, attempts=1, provider="claude",
                          cost_usd=0.0049)]


async def measure(answer, concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    counter = iter(range(10**9))
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            await answer(next(counter))
            lat.append(time.perf_counter() - t)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    lat.sort()
    return {"rps": len(lat) / (time.monotonic() - t0), "p50_ms": statistics.median(lat) * 1e3,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}


class FsyncJournal(PgJournal):
    """PgJournal with the server's synchronous commit (for comparison only)."""

    def __init__(self, target: PgTarget) -> None:
        super().__init__(target)
        self.db.close()
        self.db = PgSession(target, settings=("SET synchronous_commit = on",))


async def run(seconds: float, url: str) -> dict[str, dict]:
    tmp = tempfile.mkdtemp(prefix="bench-journal-")
    file_journal = Journal(os.path.join(tmp, "j.jsonl"))

    async def file_answer(i: int) -> None:
        file_journal.append(records(i))

    def pg_answer(journal: PgJournal):
        async def answer(i: int) -> None:
            journal.append(records(i))
            await journal.synced()
        return answer

    pg, fsync = PgJournal(PgTarget(url)), FsyncJournal(PgTarget(url))
    lease = Lease(PgSession(PgTarget(url)), Role.ROUTER, "default", "bench", where="bench")
    fenced = PgJournal(PgTarget(url), lease.claim())
    fenced.seq, fsync.seq = 1 << 40, 2 << 40  # one table: each arm its own, fresh keys
    arms = {"file": file_answer, "pg-sync": pg_answer(pg), "pg-fenced": pg_answer(fenced),
            "pg-fsync": pg_answer(fsync)}
    out = {}
    for conc in (1, 32):
        for name, answer in arms.items():
            out[f"{name}@{conc}"] = r = await measure(answer, conc, seconds)
            print(f"  {name:<9} c={conc:<3} {r['rps']:8.0f} answers/s  p50 {r['p50_ms']:7.3f} ms"
                  f"  p99 {r['p99_ms']:7.3f} ms", flush=True)
    pg.close()
    fenced.close()
    lease.release()
    fsync.close()
    file_journal.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    from tests import pg_server

    server = pg_server.start()
    try:
        password = secrets.token_hex(12)
        url = server.create_database("bench", "router", password)
        os.environ["LLM_ROUTER_DB_PASSWORD"] = password
        res = asyncio.run(run(args.seconds, url))
    finally:
        server.stop()
    print("\n| arm | c=1 answers/s | c=1 p50 ms | c=1 p99 ms | c=32 answers/s | c=32 p50 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("file", "pg-sync", "pg-fenced", "pg-fsync"):
        a, b = res[f"{name}@1"], res[f"{name}@32"]
        print(f"| {name} | {a['rps']:.0f} | {a['p50_ms']:.3f} | {a['p99_ms']:.3f} | "
              f"{b['rps']:.0f} | {b['p50_ms']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
