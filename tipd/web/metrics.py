"""Prometheus metrics of a running daemon, from its events (``GET /metrics`` of ``tipd web``).

====================================  ==========================================================
``tipd_decisions_total``              decisions, by microscope, state and kind (frame/window)
``tipd_frames_total``                 whole frames decided, by microscope
``tipd_actions_total``                commands by microscope, action and outcome: ``sent``,
                                      ``done``, ``failed``, ``rejected`` (by the controller),
                                      ``refused`` (by the safety gate), ``advisory``
``tipd_refusals_total``               commands the safety gate refused, by microscope
``tipd_errors_total``                 error events, by microscope and kind
``tipd_decision_latency_seconds``     frame (or window) in → decision out, histogram
``tipd_familiarity``                  the latest whole frame's familiarity (0–1), by microscope
``tipd_blind_frames``                 unfamiliar frames in a row where tipd is blind
``tipd_needs_operator``               1 while a microscope waits for ``tipd reset``
``tipd_held``                         1 while a microscope is on hold
``tipd_daemon_uptime_seconds``        from the latest health event
``tipd_daemon_up``                    1 while the daemon answers, 0 when it does not
``tipd_daemon_state``                 1 for the daemon's state now (:mod:`tipd.condition`),
                                      0 for the others
====================================  ==========================================================
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tipd.condition import STATES


class Metrics:
    """One registry of tipd's metrics, updated by :meth:`observe` for each event."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "tipd_decisions", "decisions", ["microscope", "state", "kind"], registry=r
        )
        self.frames = Counter("tipd_frames", "whole frames decided", ["microscope"], registry=r)
        self.actions = Counter(
            "tipd_actions", "commands by outcome", ["microscope", "action", "outcome"], registry=r
        )
        self.refusals = Counter(
            "tipd_refusals", "commands the safety gate refused", ["microscope"], registry=r
        )
        self.errors = Counter("tipd_errors", "error events", ["microscope", "what"], registry=r)
        self.latency = Histogram(
            "tipd_decision_latency_seconds",
            "frame or window in, decision out",
            ["kind"],
            buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.familiarity = Gauge(
            "tipd_familiarity", "latest whole frame's familiarity", ["microscope"], registry=r
        )
        self.blind = Gauge(
            "tipd_blind_frames", "unfamiliar frames in a row", ["microscope"], registry=r
        )
        self.needs_operator = Gauge(
            "tipd_needs_operator", "1 while waiting for tipd reset", ["microscope"], registry=r
        )
        self.held = Gauge("tipd_held", "1 while on hold", ["microscope"], registry=r)
        self.uptime = Gauge("tipd_daemon_uptime_seconds", "daemon uptime", registry=r)
        self.up = Gauge("tipd_daemon_up", "1 while the daemon answers", registry=r)
        self.state = Gauge("tipd_daemon_state", "the daemon's state", ["state"], registry=r)

    def observe(self, kind: str, body: dict[str, Any]) -> None:
        """Count one event (``kind``: state, action, error, health, operator; ``body`` its
        JSON fields)."""
        mic = body.get("microscope", "*")
        if kind == "state":
            self.decisions.labels(mic, body["state"], body.get("kind", "frame")).inc()
            self.latency.labels(body.get("kind", "frame")).observe(body["latency_ms"] / 1e3)
            if body.get("kind", "frame") == "frame":
                self.frames.labels(mic).inc()
                if body.get("familiarity") is not None:
                    self.familiarity.labels(mic).set(body["familiarity"])
        elif kind == "action":
            outcome = action_outcome(body)
            self.actions.labels(mic, body["command"]["action"], outcome).inc()
            if outcome == "refused":
                self.refusals.labels(mic).inc()
        elif kind == "error":
            self.errors.labels(mic, body["what"]).inc()
        elif kind == "health" and mic == "*":
            self.uptime.set(body["uptime_s"])
            for name, n in body.get("blind", {}).items():
                self.blind.labels(name).set(n)
            _flags(self.needs_operator, body.get("needs_operator", []))
            _flags(self.held, body.get("held", []))
            if body.get("state"):
                self.daemon(body["state"])

    def daemon(self, state: str | None) -> None:
        """The daemon's state now (None: it does not answer)."""
        self.up.set(0 if state is None else 1)
        for name in STATES:
            self.state.labels(name).set(1 if name == state else 0)

    def text(self) -> bytes:
        """The exposition format Prometheus scrapes."""
        out: bytes = generate_latest(self.registry)
        return out


def action_outcome(body: dict[str, Any]) -> str:
    """What became of a command: ``sent`` (no reply yet), the reply's status, or ``refused``
    / ``advisory`` where tipd itself did not send it."""
    reply = body.get("reply")
    if not reply:
        return "sent"
    detail = str(reply.get("detail", ""))
    if reply["status"] == "rejected" and detail.startswith("refused by the safety gate"):
        return "refused"
    if reply["status"] == "rejected" and detail.startswith("advisory mode"):
        return "advisory"
    return str(reply["status"])


def _flags(gauge: Gauge, names: list[str]) -> None:
    """Set ``gauge`` to 1 for ``names`` and 0 for every other microscope it has seen."""
    seen = {s.labels["microscope"] for m in gauge.collect() for s in m.samples}
    for name in seen | set(names):
        gauge.labels(name).set(1 if name in names else 0)
