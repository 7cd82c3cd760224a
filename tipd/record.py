"""A decision as others read it: its ``state`` event, its journal scores and its archive
verdict, each built from one :class:`tipd.decide.Step` (pure functions)."""

from __future__ import annotations

from typing import Any

from tipd.decide import Step
from tipd.ensemble import Decision
from tipd.evidence import Evidence
from tipd.protocol import EvidenceItem, FrameHeader, StateEvent


def state_event(
    microscope: str, step: Step, header: FrameHeader, rows_seen: int, latency_ms: float,
    first_row: int = 0,
) -> StateEvent:  # fmt: skip
    """The ``state`` event of ``step`` on a frame of ``header`` (a window from frame row
    ``first_row``), decided ``latency_ms`` after its message arrived."""
    d = step.decision
    lines = d.lines
    return StateEvent(
        microscope=microscope,
        frame_id=header.frame_id,
        seq=header.seq,
        rows_seen=rows_seen,
        members=d.members,
        voted=d.classes,
        state=d.state,
        desirable=d.desirable,
        latency_ms=latency_ms,
        line_jumps=step.line_jumps,
        confidence=min(1.0, max(0.0, d.confidence)),
        familiarity=d.familiarity,
        lines_tip_change=lines.probability,
        lines_row=None if lines.row is None else first_row + lines.row,
        bad=d.bad,
        tip_change=d.tip_change,
        kind=step.kind,
        evidence=[EvidenceItem(**evidence_item(e)) for e in d.evidence],
    )


def evidence_item(e: Evidence) -> dict[str, Any]:
    """One :class:`tipd.evidence.Evidence` as plain data (its reason cut to 512 characters)."""
    return {
        **e.as_dict(),
        "reason": e.reason[:512],
        "probability": min(1.0, max(0.0, e.probability)),
    }


def evidence_list(decision: Decision) -> list[dict[str, Any]]:
    """Every source's say behind ``decision``, as plain data (journal, sidecars, JSON)."""
    return [evidence_item(e) for e in decision.evidence]


def journal_scores(decision: Decision) -> dict[str, float]:
    """The confidences a journal row keeps: every label's, ``bad`` and the lines'
    ``tip_change_lines``."""
    return {
        **decision.classes,
        "bad": decision.bad,
        "tip_change_lines": decision.lines.probability,
    }


def archive_verdict(decision: Decision, model: str) -> dict[str, Any]:
    """The verdict an archived frame's sidecar keeps (:mod:`tipd.archive`)."""
    return {
        "model": model,
        "state": decision.state,
        "confidence": decision.confidence,
        "bad": decision.bad,
        "tip_change": decision.tip_change,
        "familiarity": decision.familiarity,
        "classes": decision.classes,
        "evidence": evidence_list(decision),
    }
