"""Prometheus metrics of the responder. Labels are bounded (kinds, refusal reasons), never addresses."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vigil.action_kinds import ACTION_KIND_NAMES

# Why the responder turns a request away (the `reason` label of vigil_responder_actions_refused_total).
REFUSAL_REASONS = ("conflict", "invalid", "protected")


class ResponderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions_applied = Counter(
            "vigil_responder_actions_applied_total",
            "Actions that became enforced by the backend for the first time.",
            ["kind"],
            registry=registry,
        )
        self.actions_refused = Counter(
            "vigil_responder_actions_refused_total",
            "Apply requests refused (protected target, invalid request, id reused with other content).",
            ["reason"],
            registry=registry,
        )
        self.actions_expired = Counter(
            "vigil_responder_actions_expired_total", "Actions that reached their expiry.", registry=registry
        )
        self.active_actions = Gauge(
            "vigil_responder_active_actions", "Actions currently enforced.", registry=registry
        )
        self.reconcile_errors = Counter(
            "vigil_responder_reconcile_errors_total",
            "Reconcile passes the backend failed.",
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            "vigil_responder_reconcile_duration_seconds",
            "Time one reconcile pass took, backend included.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.watchers_dropped = Counter(
            "vigil_responder_watchers_dropped_total",
            "Watch streams closed because the client did not keep up.",
            registry=registry,
        )
        # Known label values start at zero so dashboards and alerts see the series before the first event.
        for kind in ACTION_KIND_NAMES.values():
            self.actions_applied.labels(kind=kind)
        for reason in REFUSAL_REASONS:
            self.actions_refused.labels(reason=reason)
