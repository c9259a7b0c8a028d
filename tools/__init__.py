"""Chaos and reconciliation tooling — not product code. `scripts/chaos.py` runs the full
schedule, `tests/test_chaos.py` a lean one; nothing in actors/ imports it.

Module map:

    chaos.py        Chaos and load: drive HTTP traffic and a backtest at once while injecting
                    faults, then reconcile every request against the audit trail
    chaos_steps.py  Steps of the chaos run that race the system they test (tools/chaos.py)
    reconcile.py    Reconciling a chaos run: what the audit trail must say after faults and
                    kills, and the report table
"""
