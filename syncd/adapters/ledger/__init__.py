"""The ledger: the one module that writes a lead's state, its audit trail and its write-backs.

Five paths change the same lead, often at once: the poll (and the backfill and
the stream, which run its page work), the re-fetch of ``requeue`` and
``resend_uncertain``, the send gate and the outcome of a batch, start-up
recovery, and the operator commands. Each of them goes through here, so each
move is made the same way (docs/design.md#one-ledger):

* the move is checked (:func:`syncd.domain.states.check_transition`);
* the reason is bounded once (:data:`REASON_CHARS`);
* the UPDATE is set-based and guarded in SQL by the state the caller read, and,
  for a record's read, by its stamp (an older read never overwrites a newer one,
  docs/design.md#the-newest-read-wins);
* the audit rows are written with one ``INSERT ... SELECT`` (or one executemany
  where each lead has its own reason);
* the write-back queue is filled in the same transaction;
* a lead that was not where the caller said raises :class:`LedgerConflict`.

A test (``tests/unit/test_ledger_fitness.py``) fails when any module outside this package
writes ``leads.state`` or a transition row. Every function takes the caller's
:class:`Session` and never commits: the caller owns the transaction.
"""

from syncd.adapters.ledger.common import LedgerConflict, bind_processor, result_processor
from syncd.adapters.ledger.moves import (
    Step,
    mark_uncertain,
    move,
    move_by_salesforce_id,
    move_each,
    move_where,
    note,
    reject,
)
from syncd.adapters.ledger.new_leads import insert_new
from syncd.adapters.ledger.reads import (
    DELETED_NOTE,
    apply_reads,
    mark_deleted,
    note_stale,
    record_reads,
    restamp,
)

__all__ = [
    "DELETED_NOTE",
    "LedgerConflict",
    "Step",
    "apply_reads",
    "bind_processor",
    "insert_new",
    "mark_deleted",
    "mark_uncertain",
    "move",
    "move_by_salesforce_id",
    "move_each",
    "move_where",
    "note",
    "note_stale",
    "record_reads",
    "reject",
    "restamp",
    "result_processor",
]
