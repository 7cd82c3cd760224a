"""``tipd classify FILE...``: the offline entry point a lab tries first on its archive.

It shares the daemon's path: read → :mod:`tipd.preprocess` → :class:`tipd.ensemble.Ensemble`
→ :func:`tipd.ensemble.decide`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tipd.ensemble import Ensemble
from tipd.models import ModelError, find
from tipd.readers import ReaderError, read_any
from tipd.scanlines import TipChangeEvidence

DEFAULT_MODEL = "generic"


def classify_files(
    paths: list[Path], model: str | None, as_json: bool, direction: str = "forward"
) -> int:
    """Classify each file; unreadable files get an ``error`` object. Exit 1 if any failed."""
    try:
        ensemble = Ensemble(find(model or DEFAULT_MODEL))
    except ModelError as exc:
        print(f"tipd classify: {exc}", file=sys.stderr)
        return 2
    failed = 0
    name = ensemble.manifest.name
    if not as_json:
        print(f"model {name} ({ensemble.provider})")
    for path in paths:
        try:
            frame = read_any(path, direction=direction)
            decision = ensemble.classify([frame])[0]
        except ReaderError as exc:
            failed += 1
            record = {"path": str(path), "model": name, "error": str(exc)}
            print(json.dumps(record) if as_json else f"{path}: ERROR {exc}", flush=True)
            continue
        if as_json:
            print(
                json.dumps(
                    {
                        "path": str(path),
                        "channel": frame.channel,
                        "model": name,
                        "classes": {k: round(v, 4) for k, v in decision.classes.items()},
                        "state": decision.state,
                        "desirable": decision.desirable,
                        "confidence": round(decision.confidence, 4),
                        "bad": round(decision.bad, 4),
                        "tip_change": round(decision.tip_change, 4),
                        "familiarity": _rounded(decision.familiarity),
                        "familiar": decision.familiar,
                        "lines": {
                            "tip_change": round(decision.lines.probability, 4),
                            "row": decision.lines.row,
                            "jump_sigma": round(decision.lines.jump_sigma, 2),
                        },
                    }
                ),
                flush=True,
            )
        else:
            top = ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted(decision.classes.items(), key=lambda kv: -kv[1])[:3]
            )
            known = _familiar_text(decision.familiarity, decision.familiar)
            print(
                f"{path}: {decision.state} ({'good' if decision.desirable else 'bad'}, "
                f"bad {decision.bad:.2f}, tip change {decision.tip_change:.2f}, {known}) "
                f"[{top}]{_lines_text(decision.lines)}"
            )
    return 1 if failed else 0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _familiar_text(familiarity: float | None, familiar: bool) -> str:
    """How much the model knows such frames, in words."""
    if familiarity is None:
        return "familiarity not measured"
    word = "familiar" if familiar else "UNFAMILIAR: the model's classes are not trusted"
    return f"familiarity {familiarity:.3f}, {word}"


def _lines_text(lines: TipChangeEvidence) -> str:
    """The scan lines' tip-change evidence, when there is some."""
    if lines.row is None or lines.probability < 0.5:
        return ""
    return f"; lines jump at row {lines.row} ({lines.jump_sigma:.1f} σ, p {lines.probability:.2f})"
