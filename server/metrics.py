"""Every Prometheus metric of the server, defined once; the domain code increments them where
the thing happens (docs/operations.md lists them with their meaning).

Labels stay bounded: handler, op, reason, level, kind, community — never a person, a code
or a token. With several server processes on a host, set PROMETHEUS_MULTIPROC_DIR (an
empty directory, shared by the processes, emptied before they start): prometheus-client
then keeps each process's values in files there and `/metrics` of any process sums them.
"""

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GATE = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "xiaoqu_request_duration_seconds", "HTTP request duration by handler",
    ["handler", "method", "status"])

BRIDGES_CONNECTED = Gauge(
    "xiaoqu_gate_bridges_connected", "Bridges with a session up, by community",
    ["community"], multiprocess_mode="livesum")
HANDSHAKES_BUSY = Counter(
    "xiaoqu_gate_handshakes_busy", "Bridge hellos answered `busy` (the hub had as many "
    "handshakes in progress as it takes: a reconnect storm)")
DECISIONS = Counter(
    "xiaoqu_gate_decisions", "Access-log lines, by source (gate: a bridge's scan, scanner: a "
    "staff scanner, remote: a remote open, offline: a bridge's own decision), result and reason",
    ["source", "result", "reason"])
DECISION_SECONDS = Histogram(
    "xiaoqu_gate_decision_seconds", "Time to decide a scanned code online, its use taken",
    ["source"], buckets=FAST)
OFFLINE_DECISIONS = Counter(
    "xiaoqu_gate_offline_decisions", "Decisions bridges made offline, re-checked by the "
    "server: what the bridge did and what the server concludes (ok, refused, invalid_claim, "
    "double_use)", ["claimed", "outcome"])
COMMANDS = Counter(
    "xiaoqu_gate_commands", "Remote opens by their best level (offline, no_ack when none)",
    ["level"])
COMMAND_SECONDS = Histogram(
    "xiaoqu_gate_command_seconds", "Remote opens: from issue to the best level",
    ["level"], buckets=GATE)
EVENTS = Counter("xiaoqu_gate_events", "Bridge events stored, by type", ["type"])
EVENTS_DUPLICATE = Counter(
    "xiaoqu_gate_events_duplicate", "Bridge events received again and ignored (already stored)")
ALARMS_RAISED = Counter("xiaoqu_gate_alarms_raised", "Alarms raised, by kind", ["kind"])
ALARMS_OPEN = Gauge(
    "xiaoqu_gate_alarms_open", "Alarms not yet acknowledged or closed, by kind (read at scrape)",
    ["kind"], multiprocess_mode="mostrecent")
OUTBOX_PENDING = Gauge(
    "xiaoqu_outbox_pending", "Outbox effects stored and not yet done, by kind (read at scrape)",
    ["kind"], multiprocess_mode="mostrecent")
OUTBOX_OLDEST = Gauge(
    "xiaoqu_outbox_oldest_pending_seconds", "Age of the oldest pending outbox effect, by kind "
    "(0: none pending; read at scrape): an effect whose handler keeps failing grows it",
    ["kind"], multiprocess_mode="mostrecent")

SLA_ESCALATIONS = Counter(
    "xiaoqu_sla_escalations", "SLA clocks reaching near_breach (the warning) or breach",
    ["level", "clock"])
NOTIFICATIONS = Counter(
    "xiaoqu_notifications", "Notifications by channel (in_app, wechat, staff_feed) and outcome "
    "(sent, no_credit, no_openid, failed)", ["channel", "outcome"])
FEED_CLIENTS = Gauge(
    "xiaoqu_feed_clients", "Staff live-feed WebSockets signed in", multiprocess_mode="livesum")

STORE_SECONDS = Histogram(
    "xiaoqu_store_duration_seconds", "MongoDB commands and Redis commands (a pipeline as one)",
    ["store", "op"], buckets=FAST)
STORE_ERRORS = Counter(
    "xiaoqu_store_errors", "Store commands that failed, and MongoDB heartbeats that failed "
    "(op heartbeat: the server is unreachable)", ["store", "op"])
STORE_UP = Gauge(
    "xiaoqu_store_up", "1 while the store answers this process's probe (0: the breaker is "
    "open and requests needing it answer 503 at once)", ["store"], multiprocess_mode="liveall")
LEASE_HELD = Gauge(
    "xiaoqu_lease_held", "1 while this process holds the job's lease (read at scrape)", ["job"],
    multiprocess_mode="liveall")
JOB_PASSES = Gauge(
    "xiaoqu_job_passes", "Passes of the job run by this process (read at scrape)", ["job"],
    multiprocess_mode="liveall")


def jobs_read(jobs) -> None:
    """The scraped process's jobs (models/leases.LeasedJob): a lease lapses with time alone,
    so it is read, not counted."""
    for job in jobs:
        LEASE_HELD.labels(job.name).set(job.held)
        JOB_PASSES.labels(job.name).set(job.passes)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """The scrape: this process's metrics, or every process's in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exited() -> None:
    """Drop this process's live gauges from the sums (multiprocess mode)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())
