"""What is kept, on disk or in PostgreSQL: the audit trail and its spend queries, the
router's journal and state, idempotency, the response cache, the state directory's
lock and the deployment's leases.

Module map:

    audit.py           The audit trail in SQLite: the embedded default for one machine
    audit_base.py      The audit store's interface and every rule it keeps, whatever database
                       holds it
    audit_pg.py        The audit trail in PostgreSQL: the store for clusters, reachable from
                       every node
    audit_spend.py     What was spent, summed in SQL: the audit store's cost and cache-saving
                       queries
    spend.py           Spend summaries aggregated in SQL over a bounded time window
    pg.py              PostgreSQL connections: where the URL comes from, where the password
                       comes from, and one session every PostgreSQL-backed store (audit trail,
                       router state) runs its SQL through
    pg_journal.py      The router's journal in PostgreSQL: unacknowledged records survive losing
                       the node
    pg_state.py        The router's state in PostgreSQL, where a restarted actor on any node
                       finds it
    journal.py         The router's write-ahead journal of records not yet acknowledged by the
                       tracker
    idempotency.py     Request ids are idempotency keys, as in payment APIs
    state.py           One instance's state directory: private files, and a lock so no two
                       instances share it
    lease.py           Who owns a deployment's state: a lease row per stateful actor, with an
                       epoch that fences
    response_cache.py  The exact-match response cache: an answer already paid for is not paid
                       for again
"""
