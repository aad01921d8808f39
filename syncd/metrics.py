"""Prometheus metrics, all in one registry with the ``syncd_`` prefix.

Counters end in ``_total``, durations are ``_seconds``, and no label ever
carries a per-lead value (Salesforce Id, phone): labels are sync, agent,
state, outcome and similar small sets.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from syncd import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

# --- the process: process_* (CPU, memory, open files, start time), python_info, python_gc_* -
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "syncd_build_info",
    "Always 1; the version label says which syncd this process runs.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# --- delivery (SimZ) ---------------------------------------------------------------
LEADS_DELIVERED = Counter(
    "syncd_leads_delivered_total",
    "Leads whose SimZ answer was recorded, by outcome "
    "(accepted, rejected, requeued, uncertain, failed).",
    ["sync", "outcome"],
    registry=REGISTRY,
)
BATCHES = Counter(
    "syncd_batches_total",
    "POSTs to SimZ by classified result (e.g. accepted, split, retry, paused, uncertain).",
    ["sync", "agent", "result"],
    registry=REGISTRY,
)
SIMZ_REQUEST_DURATION = Histogram(
    "syncd_simz_request_duration_seconds",
    "Time from sending a batch to SimZ to reading its answer.",
    ["sync"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)

# --- polling (Salesforce) ----------------------------------------------------------
RECORDS_POLLED = Counter(
    "syncd_records_polled_total",
    "Salesforce records read by polls, by what they became (new, updated, unchanged, ...).",
    ["sync", "result"],
    registry=REGISTRY,
)
DO_NOT_CALL_UNRECOGNISED = Counter(
    "syncd_do_not_call_unrecognised_total",
    "Records whose DoNotCall value was neither a boolean nor a configured callable value "
    "(the lead is skipped).",
    ["sync"],
    registry=REGISTRY,
)
GATE_SKIPPED = Counter(
    "syncd_gate_skipped_total",
    "Leads the send gate skipped when delivery claimed them, by rule.",
    ["sync", "rule"],
    registry=REGISTRY,
)
POLLS = Counter(
    "syncd_polls_total",
    "Polls by status (ok, paused, error).",
    ["sync", "status"],
    registry=REGISTRY,
)
POLL_DURATION = Histogram(
    "syncd_poll_duration_seconds",
    "Duration of one poll of one sync.",
    ["sync"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
LAST_SUCCESSFUL_POLL = Gauge(
    "syncd_last_successful_poll_timestamp_seconds",
    "Unix time of the last poll that finished without error.",
    ["sync"],
    registry=REGISTRY,
)
SALESFORCE_API_USAGE = Gauge(
    "syncd_salesforce_api_usage_ratio",
    "Share of the org's daily API requests used, from Sforce-Limit-Info (0 to 1).",
    registry=REGISTRY,
)
SALESFORCE_CALLS = Counter(
    "syncd_salesforce_calls_total",
    "HTTP calls made to Salesforce, by kind (login, query, query_more, bulk, describe, writeback).",
    ["kind"],
    registry=REGISTRY,
)

# --- state of the outbox (refreshed from the database) ------------------------------
LEADS_BY_STATE = Gauge(
    "syncd_leads",
    "Leads in the database, by sync and state.",
    ["sync", "state"],
    registry=REGISTRY,
)
UNCERTAIN_LEADS = Gauge(
    "syncd_uncertain_leads",
    "Leads whose delivery outcome is unknown and that need an operator (alert when > 0).",
    ["sync"],
    registry=REGISTRY,
)
HELD_LEADS = Gauge(
    "syncd_held_leads",
    "New leads the blast-radius guard holds until an operator releases or discards them "
    "(alert when > 0).",
    ["sync"],
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "syncd_backlog_leads",
    "Queued leads waiting for delivery, by sync and agent.",
    ["sync", "agent"],
    registry=REGISTRY,
)
OLDEST_QUEUED = Gauge(
    "syncd_oldest_queued_seconds",
    "Age of the oldest queued lead (since it was first recorded), by sync and agent; "
    "0 when none is queued.",
    ["sync", "agent"],
    registry=REGISTRY,
)
PAUSED = Gauge(
    "syncd_paused",
    "1 while something is paused: scope is api_key, agent (SimZ answers), polling, "
    "or operator_sync, operator_agent (syncd pause).",
    ["scope", "name"],
    registry=REGISTRY,
)

# --- replicas (leases) --------------------------------------------------------------
SYNC_LEADER = Gauge(
    "syncd_sync_leader",
    "1 on the replica that holds the sync's lease (runs its poll and delivery), else 0.",
    ["sync"],
    registry=REGISTRY,
)
LEASE_TAKEOVERS = Counter(
    "syncd_lease_takeovers_total",
    "Times this replica took a sync's lease over from another holder (or a past run).",
    ["sync"],
    registry=REGISTRY,
)

# --- write-back (Salesforce) --------------------------------------------------------
WRITEBACKS = Counter(
    "syncd_writeback_total",
    "Lead outcomes written back to Salesforce records, by outcome (done, retry, failed).",
    ["sync", "outcome"],
    registry=REGISTRY,
)
WRITEBACK_PENDING = Gauge(
    "syncd_writeback_pending",
    "Lead outcomes waiting to be written back to Salesforce.",
    ["sync"],
    registry=REGISTRY,
)
WRITEBACK_CALLS = Counter(
    "syncd_writeback_api_calls_total",
    "sObject Collections update calls made for write-back, by result (ok, error).",
    ["sync", "result"],
    registry=REGISTRY,
)
WRITEBACK_WAITED = Counter(
    "syncd_writeback_waited_seconds_total",
    "Seconds write-back waited for a delivery pass of this process to finish sending.",
    ["sync"],
    registry=REGISTRY,
)
WRITEBACK_BROKEN = Gauge(
    "syncd_writeback_broken",
    "1 while Salesforce refuses a configured write-back field of the sync (INVALID_FIELD).",
    ["sync"],
    registry=REGISTRY,
)

CALL_WRITEBACKS = Counter(
    "syncd_call_writebacks_total",
    "Calls written back to Salesforce (a Task, or the record's fields), by mode and result "
    "(done, retry, in_doubt, failed).",
    ["sync", "mode", "result"],
    registry=REGISTRY,
)

# --- the reconciliation sweep (syncs[].reconcile) -----------------------------------
RECONCILE_MISSED = Gauge(
    "syncd_reconcile_missed",
    "Records the sync's query matches that have no lead, as the last complete sweep found "
    "them (alert when > 0); born at the first sweep.",
    ["sync"],
    registry=REGISTRY,
)
RECONCILE_LAST_SUCCESS = Gauge(
    "syncd_reconcile_last_success_timestamp_seconds",
    "Unix time of the last reconciliation sweep that compared its whole window.",
    ["sync"],
    registry=REGISTRY,
)
RECONCILE_RUNS = Counter(
    "syncd_reconcile_runs_total",
    "Scheduled reconciliation sweeps by status (ok, paused, error, stopped).",
    ["sync", "status"],
    registry=REGISTRY,
)

# --- streaming (Pub/Sub API) ---------------------------------------------------------
STREAM_CONNECTED = Gauge(
    "syncd_stream_connected",
    "1 while the sync's Pub/Sub stream is open on this replica, else 0.",
    ["sync"],
    registry=REGISTRY,
)
STREAM_LAST_EVENT = Gauge(
    "syncd_stream_last_event_timestamp_seconds",
    "Unix time the last change event of the sync was handled (its leads committed).",
    ["sync"],
    registry=REGISTRY,
)
STREAM_REPLAY_LAG = Gauge(
    "syncd_stream_replay_lag_seconds",
    "From the last handled event's commit in Salesforce to its replay id being stored.",
    ["sync"],
    registry=REGISTRY,
)
STREAM_EVENTS = Counter(
    "syncd_stream_events_total",
    "Change events received, by change type (CREATE, UPDATE, DELETE, GAP_CREATE, ...).",
    ["sync", "change_type"],
    registry=REGISTRY,
)
STREAM_RECONNECTS = Counter(
    "syncd_stream_reconnects_total",
    "Times the sync's Pub/Sub stream ended and was opened again.",
    ["sync"],
    registry=REGISTRY,
)
STREAM_GAPS = Counter(
    "syncd_stream_gaps_total",
    "Gap events (GAP_*): Salesforce could not send the change itself, so the record is read.",
    ["sync"],
    registry=REGISTRY,
)
STREAM_REPLAY_RESETS = Counter(
    "syncd_stream_replay_resets_total",
    "Times the stored replay id was refused (expired or invalid): the stream restarted at "
    "LATEST and a reconciliation poll covered the gap.",
    ["sync"],
    registry=REGISTRY,
)
STREAM_STALLED = Gauge(
    "syncd_stream_stalled",
    "1 while the sync's stream runs here but does not advance: events or keepalives arrive "
    "and no replay id was stored for 5 minutes, or the same batch failed 5 times in a row.",
    ["sync"],
    registry=REGISTRY,
)
STREAM_DROPPED = Counter(
    "syncd_stream_dropped_events_total",
    "Change events (or the part of one) syncd could not use and let go, by reason: "
    "bad_id (names no record: not a Salesforce Id), bad_header (a header field unreadable "
    "or out of range left nothing to do), undecodable (the payload does not fit its schema).",
    ["sync", "reason"],
    registry=REGISTRY,
)
STREAM_LINGER = Gauge(
    "syncd_stream_linger_seconds",
    "The stream's current batch window: delivery.linger when events are sparse, growing "
    "up to source.max_linger while they keep arriving (one Salesforce query per window).",
    ["sync"],
    registry=REGISTRY,
)

# --- the suppression list -----------------------------------------------------------
#: Up to a day: an opt-out honoured within seconds, minutes or hours.
_LAG_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
SUPPRESSION_LAG = Histogram(
    "syncd_suppression_lag_seconds",
    "For each number a record put on the suppression list: the time from the record's "
    "SystemModstamp (when the opt-out was made) to its addition. source: do_not_call "
    "(a synced record's DoNotCall flag) or the name of a suppression source.",
    ["source"],
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)
SUPPRESSION_LATE = Counter(
    "syncd_suppression_late_total",
    "Numbers a record put on the suppression list later than suppression.max_lag after "
    "its SystemModstamp.",
    ["source"],
    registry=REGISTRY,
)

# --- call outcomes (the webhook receiver) -------------------------------------------
WEBHOOKS = Counter(
    "syncd_webhooks_total",
    "POSTs to the call-outcome webhook receiver, by result: stored, duplicate (the same "
    "body was stored before), not_found (no such path or token), too_large, bad_request "
    "(not a JSON object or array, unreadable framing, not a POST), error (answered 503).",
    ["result"],
    registry=REGISTRY,
)

# --- speed to lead ------------------------------------------------------------------
#: From tens of milliseconds (one stage of a streamed lead) up to an hour (a poll's lag,
#: a lead waiting for its calling window).
_SPEED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SPEED_TO_LEAD = Histogram(
    "syncd_speed_to_lead_seconds",
    "Each lead's way from its record's creation to a call, stage by stage (consecutive "
    "intervals, so they add up): read (CreatedDate to read by syncd), queued (read to "
    "first queued), sent (queued to the request carrying it), accepted (sent to SimZ's "
    "accepting answer), first_call (accepted to the first call outcome received); total "
    "is CreatedDate to accepted, the sum of the first four. Observed once per lead and "
    "stage, by the process that stamped the later moment.",
    ["sync", "stage"],
    buckets=_SPEED_BUCKETS,
    registry=REGISTRY,
)
SPEED_TO_LEAD_SKEW = Counter(
    "syncd_speed_to_lead_clock_skew_total",
    "Speed-to-lead stages that came out negative (Salesforce's clock, which stamps "
    "CreatedDate, ahead of syncd's) and were observed as 0.",
    ["sync"],
    registry=REGISTRY,
)

# --- call outcomes (SimZ webhooks) --------------------------------------------------
CALL_EVENTS_PROCESSED = Counter(
    "syncd_call_events_processed_total",
    "Stored call-outcome webhook events processed, by what they became: matched (a call "
    "outcome of a lead), unmatched (no genuine correlation value, or no such lead) or "
    "unreadable (not JSON, or the paths found neither outcome nor disposition).",
    ["status"],
    registry=REGISTRY,
)
#: An opt-out honoured within a second or two; the tail shows a stalled processor.
_OPTOUT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900, 3600)
CALL_OPTOUT = Histogram(
    "syncd_call_optout_seconds",
    "For each call outcome whose disposition is an opt-out: the time from the hook's "
    "receipt to the commit that put its number on the suppression list (or found it there).",
    buckets=_OPTOUT_BUCKETS,
    registry=REGISTRY,
)
CALL_EVENTS_PENDING = Gauge(
    "syncd_call_events_pending",
    "Stored call-outcome webhooks not processed yet (status new); refreshed every 15 s.",
    registry=REGISTRY,
)
CALL_EVENTS_OLDEST_PENDING = Gauge(
    "syncd_call_events_oldest_pending_seconds",
    "Age of the oldest stored webhook not processed yet (since its receipt); 0 when none "
    "waits. Growing: no replica processes the hooks (alert SyncdCallEventsBacklog).",
    registry=REGISTRY,
)
CALL_WRITEBACKS_PENDING = Gauge(
    "syncd_call_writebacks_pending",
    "Call outcomes of the sync waiting to be written back to Salesforce (pending, or "
    "claimed and in doubt); every sync with call_writeback has a series.",
    ["sync"],
    registry=REGISTRY,
)
