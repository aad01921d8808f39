"""Operator use cases: what is going on (status), what happened to a lead (leads), the
one manual resend syncd allows (requeue), recording what SimZ confirmed about an
uncertain lead (resolve), and settling held leads and failed write-backs.

``status`` and ``leads`` read only the database, so they work while the daemon
runs and while Salesforce or SimZ are down. ``requeue`` fetches the selected
records again from Salesforce first and refuses, changing nothing, when
Salesforce cannot be reached (:mod:`syncd.services.operator.requeueing` states
its rules). One module per concern; callers import from this package.
"""

from __future__ import annotations

from syncd.services.operator.calls_status import CallsView, CallWritebackView
from syncd.services.operator.common import HELD, REQUEUE_STATES, STATE_ORDER, iso, to_jsonable
from syncd.services.operator.held_breakdown import BREAKDOWNS, HeldGroup, held_groups
from syncd.services.operator.held_leads import (
    DISCARD_NOTE,
    DISCARD_REASON,
    RELEASE_REASON,
    HeldResult,
    count_held,
    discard,
    release,
)
from syncd.services.operator.lead_listing import (
    LeadView,
    TransitionView,
    WritebackAttemptView,
    list_leads,
)
from syncd.services.operator.org_status import OrgView
from syncd.services.operator.requeueing import (
    DEFAULT_REASON,
    HeldLead,
    RequeueCount,
    RequeuePreview,
    RequeueRefused,
    RequeueResult,
    preview_requeue,
    requeue,
)
from syncd.services.operator.resolving import (
    RESOLVE_REASON,
    RESOLVE_TARGETS,
    ResolvePreview,
    ResolveResult,
    preview_resolve,
    resolve,
)
from syncd.services.operator.restoring import (
    RESTORE_REASON,
    RestoredLead,
    RestoreResult,
    discarded,
    restore,
)
from syncd.services.operator.speed_status import StageView
from syncd.services.operator.status_report import (
    UNCERTAIN_HINT,
    AgentStatus,
    BatchView,
    LeaderView,
    OperatorPauseView,
    PauseView,
    PollView,
    ReplicaView,
    StatusReport,
    StreamView,
    SyncStatus,
    WritebackStatus,
    status,
)
from syncd.services.operator.writeback_retry import failed_writebacks, retry_writebacks

__all__ = [
    "BREAKDOWNS",
    "DEFAULT_REASON",
    "DISCARD_NOTE",
    "DISCARD_REASON",
    "HELD",
    "RELEASE_REASON",
    "REQUEUE_STATES",
    "RESOLVE_REASON",
    "RESOLVE_TARGETS",
    "RESTORE_REASON",
    "STATE_ORDER",
    "UNCERTAIN_HINT",
    "AgentStatus",
    "BatchView",
    "CallWritebackView",
    "CallsView",
    "HeldGroup",
    "HeldLead",
    "HeldResult",
    "LeadView",
    "LeaderView",
    "OperatorPauseView",
    "OrgView",
    "PauseView",
    "PollView",
    "ReplicaView",
    "RequeueCount",
    "RequeuePreview",
    "RequeueRefused",
    "RequeueResult",
    "ResolvePreview",
    "ResolveResult",
    "RestoreResult",
    "RestoredLead",
    "StageView",
    "StatusReport",
    "StreamView",
    "SyncStatus",
    "TransitionView",
    "WritebackAttemptView",
    "WritebackStatus",
    "count_held",
    "discard",
    "discarded",
    "failed_writebacks",
    "held_groups",
    "iso",
    "list_leads",
    "preview_requeue",
    "preview_resolve",
    "release",
    "requeue",
    "resolve",
    "restore",
    "retry_writebacks",
    "status",
    "to_jsonable",
]
