"""Labelling: a queue of scans to label (archived frames, or any folder of scans), the least
certain first, and a labels folder that ``tipd train --data DIR --init-from MODEL`` takes as it
is: one sub-folder per class of the model's taxonomy, each scan copied in with its sidecar.

The queue puts the unfamiliar frames first (where a lab's labels teach the model most), then
the rest by the confidence of the verdict, lowest first; scans without a verdict come last.
Every label is also a line of ``labels.csv`` in the labels folder (time, class, who, source).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tipd.errors import UserError
from tipd.readers import ReaderError, find_scans

LOG = "labels.csv"


class LabelError(UserError, ValueError):
    """A label request that cannot be carried out: an unknown scan or class, nothing to undo."""


@dataclass(frozen=True)
class Candidate:
    """One scan to label: its file and tipd's verdict on it, where the sidecar holds one."""

    key: str  #: stable id within the queue: the path relative to its folder
    path: Path
    verdict: dict[str, Any]

    @property
    def familiarity(self) -> float | None:
        value = self.verdict.get("familiarity")
        return None if value is None else float(value)

    def order(self) -> tuple[int, float, str]:
        """Sort key: unfamiliar first, then least confident, then no verdict; by name."""
        if not self.verdict:
            return (2, 0.0, self.key)
        unfamiliar = self.verdict.get("state") == "unfamiliar"
        return (0 if unfamiliar else 1, float(self.verdict.get("confidence", 0.0)), self.key)


def verdict_of(path: Path) -> dict[str, Any]:
    """tipd's verdict in ``path``'s sidecar (:mod:`tipd.archive`), or {}."""
    sidecar = path.with_suffix(".json")
    if path.suffix.lower() != ".npy" or not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}
    verdict = meta.get("tipd") if isinstance(meta, dict) else None
    return dict(verdict) if isinstance(verdict, dict) else {}


@dataclass
class Labelling:
    """The queue of ``source`` scans and the ``labels`` folder for ``classes``."""

    source: Path
    labels: Path
    classes: list[str]
    #: a verdict for a scan whose sidecar holds none (any folder of scans): e.g. the model's,
    #: so that the queue is ordered there too; raises ReaderError for a file it cannot read
    judge: Callable[[Path], dict[str, Any]] | None = None
    queue: list[Candidate] = field(default_factory=list)
    done: list[tuple[Candidate, str, list[Path]]] = field(default_factory=list)  #: for undo
    unreadable: set[Path] = field(default_factory=set)  #: not offered: cannot be shown

    def __post_init__(self) -> None:
        self.labels.mkdir(parents=True, exist_ok=True)
        self.refresh()

    def refresh(self) -> int:
        """Add the scans that appeared in the source folder since (the archive grows while
        the daemon runs); returns how many."""
        taken = self._labelled()
        queued = {c.key for c in self.queue}
        new = []
        for p in find_scans(self.source):
            key = str(p.relative_to(self.source))
            if key in queued or p in self.unreadable or _inside(p, self.labels) or p.name in taken:
                continue
            verdict = verdict_of(p)
            if not verdict and self.judge is not None:
                try:
                    verdict = self.judge(p)
                except ReaderError:
                    self.unreadable.add(p)
                    continue
            new.append(Candidate(key, p, verdict))
        self.queue = sorted(self.queue + new, key=Candidate.order)
        return len(new)

    def _labelled(self) -> set[str]:
        """File names already labelled (in any class folder): not offered again."""
        return {p.name for c in self.classes for p in (self.labels / c).glob("*")}

    def find(self, key: str) -> Candidate:
        for c in self.queue:
            if c.key == key:
                return c
        raise LabelError(f"no scan {key!r} waiting to be labelled")

    def label(self, key: str, cls: str, who: str = "") -> list[Path]:
        """Copy scan ``key`` (and its sidecar) into ``labels/<cls>/``; returns the copies."""
        if cls not in self.classes:
            raise LabelError(f"unknown class {cls!r}; this taxonomy's: {', '.join(self.classes)}")
        scan = self.find(key)
        folder = self.labels / cls
        folder.mkdir(exist_ok=True)
        copies = []
        for f in _with_sidecar(scan.path):
            target = folder / f.name
            shutil.copy2(f, target)
            copies.append(target)
        self.queue.remove(scan)
        self.done.append((scan, cls, copies))
        with (self.labels / LOG).open("a", newline="") as fh:
            csv.writer(fh).writerow([time.strftime("%Y-%m-%dT%H:%M:%S"), cls, who, str(scan.path)])
        return copies

    def undo(self) -> Candidate:
        """Take back the last label: its copies go, the scan returns to the head of the queue."""
        if not self.done:
            raise LabelError("nothing to undo")
        scan, cls, copies = self.done.pop()
        for f in copies:
            f.unlink(missing_ok=True)
        self.queue.insert(0, scan)
        with (self.labels / LOG).open("a", newline="") as fh:
            csv.writer(fh).writerow(
                [time.strftime("%Y-%m-%dT%H:%M:%S"), f"undo {cls}", "", str(scan.path)]
            )
        return scan

    def counts(self) -> dict[str, int]:
        """Scans labelled per class so far (in the folder, from any session)."""
        return {
            c: sum(1 for p in (self.labels / c).glob("*") if p.suffix.lower() != ".json")
            for c in self.classes
        }


def _with_sidecar(path: Path) -> list[Path]:
    sidecar = path.with_suffix(".json")
    return [path, sidecar] if path.suffix.lower() == ".npy" and sidecar.is_file() else [path]


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
