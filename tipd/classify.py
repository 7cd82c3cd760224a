"""``tipd classify FILE...``: the offline entry point a lab tries first on its archive.

It shares the daemon's path: read → the decision step (:func:`tipd.decide.step`, advisory, on a
history of its own for each file: a scan judged alone).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tipd.decide import Rules, history, step
from tipd.ensemble import Decision, Ensemble
from tipd.frames import Frame
from tipd.models import ModelError, find
from tipd.readers import ReaderError, find_scans, read_any
from tipd.record import evidence_list
from tipd.taxonomy import UNFAMILIAR

DEFAULT_MODEL = "generic"


#: what the states that are not a class of the model mean, for the table's footnotes
STATE_NOTES = {
    "unknown": "no class reached its confidence threshold: the model is unsure, and tipd "
    "does nothing to the tip on such a frame",
    UNFAMILIAR: "the frame is unlike the model's training frames (scale or texture): its "
    "classes are not trusted and tipd does nothing to the tip",
}

COLUMNS = (
    "file", "scan", "pixels", "bias", "state", "conf", "bad", "tip change", "familiar",
    "strongest evidence",
)  # fmt: skip


def classify_files(
    paths: list[Path],
    model: str | None,
    as_json: bool,
    direction: str = "forward",
    sheet: Path | None = None,
) -> int:
    """Classify each file and print a table (or, with ``as_json``, one JSON object per file);
    unreadable files get an error row. With ``sheet``, also write a contact sheet of the scans
    with their verdicts there. Exit 1 if any failed."""
    try:
        ensemble = Ensemble(find(model or DEFAULT_MODEL))
    except ModelError as exc:
        print(f"tipd classify: {exc}", file=sys.stderr)
        return 2
    name = ensemble.manifest.name
    paths = scan_files(paths)
    rows: list[tuple[str, ...]] = []
    seen: list[tuple[Path, Frame, Decision]] = []
    failed = 0
    for path in paths:
        try:
            frame = read_any(path, direction=direction)
            decision = judge(frame, ensemble)
        except ReaderError as exc:
            failed += 1
            if as_json:
                print(json.dumps({"path": str(path), "model": name, "error": str(exc)}))
            else:
                rows.append((str(path), f"ERROR {exc}"))
            continue
        seen.append((path, frame, decision))
        if as_json:
            print(json.dumps(_record(path, frame, name, decision)), flush=True)
        else:
            rows.append(_row(path, frame, decision))
    if not as_json:
        print(f"model {name} ({ensemble.provider}), {direction} scans")
        print(_table(rows))
        for state, note in STATE_NOTES.items():
            if any(len(r) > 4 and r[4] == state for r in rows):
                print(f"{state}: {note}")
    if sheet is not None and seen:
        print(
            f"wrote {verdict_sheet(seen, sheet, name)}", file=sys.stderr if as_json else sys.stdout
        )
    return 1 if failed else 0


def judge(frame: Frame, ensemble: Ensemble) -> Decision:
    """The decision step's verdict on ``frame`` seen alone (no earlier frame of its area)."""
    alone = history(frame.microscope, set(ensemble.manifest.desirable))
    return step(frame, alone, ensemble, Rules(advisory=True)).decision


def verdict_sheet(
    seen: list[tuple[Path, Frame, Decision]], path: Path, model: str, per_row: int = 5
) -> Path:
    """A contact sheet of classified scans, each captioned with its file and verdict."""
    from tipd.sheet import contact_sheet, rows_of

    rows = rows_of(
        [f.data for _, f, _ in seen],
        [f"{p.name}: {d.state} {d.confidence:.2f}" for p, _, d in seen],
        [f.scan_size_nm[0] for _, f, _ in seen],
        per_row,
        "scans",
    )
    return contact_sheet(rows, path, tile=180, title=f"tipd classify, model {model}")


def scan_files(paths: list[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the scans in it (:func:`find_scans`)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += find_scans(path)
        else:
            out.append(path)
    return out


def _record(path: Path, frame: Frame, model: str, decision: Decision) -> dict[str, object]:
    """One file's JSON object: the table's columns and every label's confidence."""
    w, h = frame.scan_size_nm
    return {
        "path": str(path),
        "channel": frame.channel,
        "direction": frame.direction,
        "scan_size_nm": [round(w, 3), round(h, 3)],
        "pixels": list(frame.data.shape),
        "bias_V": frame.bias_V,
        "model": model,
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
        "evidence": evidence_list(decision),
    }


def _row(path: Path, frame: Frame, decision: Decision) -> tuple[str, ...]:
    """One file's table row: the columns of :data:`COLUMNS`."""
    w, h = frame.scan_size_nm
    rows, cols = frame.data.shape
    known = "n/a" if decision.familiarity is None else f"{decision.familiarity:.2f}"
    lines = decision.lines
    change = f"{decision.tip_change:.2f}"
    if lines.row is not None and lines.probability >= 0.5:
        change += f" (line {lines.row})"
    return (
        str(path),
        f"{w:.4g}×{h:.4g} nm",
        f"{cols}×{rows}",
        f"{frame.bias_V:.3g} V" if frame.bias_V else "?",
        decision.state,
        f"{decision.confidence:.2f}",
        f"{decision.bad:.2f}",
        change,
        known + ("" if decision.familiar else " (no)"),
        strongest(decision),
    )


def strongest(decision: Decision) -> str:
    """The certain source that says most against the tip: ``source: fault p``."""
    said = [e for e in decision.evidence if e.certain and e.fault not in ("good", "none")]
    if not said:
        return "none"
    e = max(said, key=lambda e: e.probability)
    return f"{e.source}: {e.fault} {e.probability:.2f}"


def _table(rows: list[tuple[str, ...]]) -> str:
    """``rows`` under :data:`COLUMNS`, left-aligned; an error row spans the columns."""
    widths = [len(c) for c in COLUMNS]
    for row in rows:
        if len(row) == len(COLUMNS):
            widths = [max(a, len(b)) for a, b in zip(widths, row, strict=True)]
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    for row in rows:
        cells = row if len(row) == len(COLUMNS) else (row[0].ljust(widths[0]), row[1])
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip())
    return "\n".join(out)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
