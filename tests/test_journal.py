"""The router's journal: unacknowledged records survive a restart; acked ones are not re-sent."""

from __future__ import annotations

import time

from actors.core.records import AttemptRecord, RequestRecord
from actors.stores.journal import Journal


def recs(i: int) -> list:
    now = time.time()
    return [AttemptRecord(request_id=f"r{i}", attempt=1, ts=now, provider="p", model="m", ok=True),
            RequestRecord(request_id=f"r{i}", ts=now, ok=True, attempts=1)]


def test_unacked_entries_come_back_after_restart(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    seqs = [j.append(recs(i)) for i in range(5)]
    j.ack([seqs[0], seqs[1], seqs[3]])  # 3 is acked but 2 is not: prefix stops at 2
    j.close()
    again = Journal(tmp_path / "j.jsonl")
    pending = again.pending()
    assert [s for s, _ in pending] == [3, 4, 5]
    assert isinstance(pending[0][1][1], RequestRecord) and pending[0][1][1].request_id == "r2"
    assert again.append(recs(9)) == 6  # numbering continues
    again.ack([3, 4, 5, 6])
    assert Journal(tmp_path / "j.jsonl").pending() == []


def test_torn_last_line_is_skipped(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append(recs(1))
    j.close()
    with open(tmp_path / "j.jsonl", "a") as fh:
        fh.write('{"seq": 2, "records": [{"kind": "att')
    j = Journal(tmp_path / "j.jsonl")
    assert [s for s, _ in j.pending()] == [1]
    j.append(recs(3))  # appends after a torn line still read back
    assert [s for s, _ in Journal(tmp_path / "j.jsonl").pending()] == [1, 2]


def test_ack_sidecar_appends_and_compacts(tmp_path, monkeypatch):
    """Acks append a line (no file replaced per ack); the sidecar is rewritten as one line
    when it grows, and a torn last line falls back to the last whole number."""
    import actors.stores.journal as journal

    monkeypatch.setattr(journal, "COMPACT_ACK_LINES", 5)
    j = Journal(tmp_path / "j.jsonl")
    seqs = [j.append(recs(i)) for i in range(6)]
    for s in seqs[:3]:
        j.ack([s])
    side = tmp_path / "j.jsonl.ack"
    assert side.read_text().split() == ["0", "1", "2", "3"]
    for s in seqs[3:]:
        j.ack([s])
    assert side.read_text().split() == ["4", "5", "6"]  # compacted at 5 lines, then appended
    assert Journal(tmp_path / "j.jsonl").acked == 6
    with open(side, "a") as fh:
        fh.write("1")  # a torn write of "12"
    assert Journal(tmp_path / "j.jsonl").acked == 6
