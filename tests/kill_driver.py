"""`llm-router` that SIGKILLs itself at a point of batch mode, for the kill tests
(tests/test_backtest_batch_kill.py) — the hook lives here, not in the product:

    python -m tests.kill_driver intent|submitted <llm-router arguments>

`intent`: right after the first batch job's intent is journaled, before it is submitted;
`submitted`: right after it was submitted, before its id is journaled.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from actors.backtest.batch_journal import BatchJournal


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # the signal is on its way


def arm(point: str) -> None:
    """Wrap the journal's write of that point so the process dies there."""
    if point == "intent":
        intend = BatchJournal.intend

        def intend_then_die(self: BatchJournal, *a: Any, **kw: Any) -> Any:
            intend(self, *a, **kw)
            _die()

        BatchJournal.intend = intend_then_die  # type: ignore[method-assign]
    elif point == "submitted":
        def die_before_the_id(self: BatchJournal, *a: Any, **kw: Any) -> None:
            _die()

        BatchJournal.submitted = die_before_the_id  # type: ignore[method-assign]
    else:
        raise SystemExit(f"kill point: intent or submitted, not {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    from actors.cli import main

    sys.exit(main(sys.argv[2:]))
