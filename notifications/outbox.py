"""The e-mail outbox: rows written in the same transaction as the event that caused them.

Contract (the SLA ticker and the assignment alerts write through this; the sender reads it):
    enqueue(session, *, dedupe_key, to, subject, text, html, created_at, kind, ref) -> bool
        Adds one message unless a message with the same dedupe_key exists (returns False then).
        Never commits: the caller's transaction decides.
Implemented in the notifications issue; this module owns the `outbox` table.
"""
