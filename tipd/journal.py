"""The SQLite journal (WAL): every frame received, every decision, every command and reply.

Each write is one short transaction, so a daemon killed at any moment leaves whole rows only.
A write that fails (a full or failing disk, a locked file) never raises: it is logged, counted
(:attr:`Journal.failures`), kept in memory (up to :data:`PENDING_MAX` writes, the oldest
dropped first and counted in :attr:`Journal.dropped`) and tried again, in order, before the
next write. The file is created readable by its owner only.
Tables (times are unix seconds):

* ``frames``: microscope, frame_id, seq, kind (``frame``/``window``/``lines``/``error``),
  rows_seen, status (``classified``, ``skipped``, ``rejected``), state, confidences (JSON),
  latency_ms, detail, t, familiarity (0–1; NULL where not measured), archive (the archived
  frame's ``.npy`` path, :mod:`tipd.archive`; NULL where not archived), evidence (JSON: every
  source's say behind the decision, :mod:`tipd.evidence`)
* ``commands``: id, microscope, frame_id, action, params (JSON), reason (JSON), status
  (``sent``, ``refused``, ``advisory``, ``done``, ``rejected``, ``failed``), detail, t_sent,
  t_reply
* ``operator``: t, microscope, op (``hold``, ``release``, ``reset``), who, detail
* ``gates``: microscope, state (JSON: :meth:`tipd.safety.SafetyGate.snapshot`), t; one row per
  microscope, replaced at every change, read back at start
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from tipd.taxonomy import TAXONOMIES, UNFAMILIAR

log = structlog.get_logger("tipd.journal")

#: writes kept in memory while the journal cannot be written
PENDING_MAX = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL, microscope TEXT NOT NULL, frame_id TEXT, seq INTEGER, kind TEXT NOT NULL,
    rows_seen INTEGER, status TEXT NOT NULL, state TEXT, confidences TEXT, latency_ms REAL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS frames_t ON frames (t);
CREATE INDEX IF NOT EXISTS frames_state ON frames (state);
CREATE TABLE IF NOT EXISTS operator (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL, microscope TEXT NOT NULL, op TEXT NOT NULL, who TEXT NOT NULL, detail TEXT
);
CREATE TABLE IF NOT EXISTS gates (
    microscope TEXT PRIMARY KEY, state TEXT NOT NULL, t REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, microscope TEXT NOT NULL, frame_id TEXT, action TEXT NOT NULL,
    params TEXT NOT NULL, reason TEXT, status TEXT NOT NULL, detail TEXT,
    t_sent REAL NOT NULL, t_reply REAL
);
"""


class Journal:
    """One SQLite file; safe to read (``tipd journal``) while the daemon writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.failures = 0  #: writes that failed (each try counts)
        self.dropped = 0  #: writes given up (the pending queue was full)
        self.last_error = ""
        self.pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(frames)")}
        if "familiarity" not in columns:  # a journal written before familiarity was measured
            self.db.execute("ALTER TABLE frames ADD COLUMN familiarity REAL")
        if "archive" not in columns:  # a journal written before frames were archived
            self.db.execute("ALTER TABLE frames ADD COLUMN archive TEXT")
        if "evidence" not in columns:  # a journal written before the evidence was kept
            self.db.execute("ALTER TABLE frames ADD COLUMN evidence TEXT")

    def frame(
        self,
        microscope: str,
        frame_id: str | None,
        seq: int | None,
        kind: str,
        rows_seen: int | None,
        status: str,
        state: str | None = None,
        confidences: dict[str, float] | None = None,
        latency_ms: float | None = None,
        detail: str = "",
        familiarity: float | None = None,
        archive: str | None = None,
        evidence: list[dict[str, Any]] | None = None,
    ) -> None:
        self._write(
            "INSERT INTO frames (t, microscope, frame_id, seq, kind, rows_seen, status, state,"
            " confidences, latency_ms, detail, familiarity, archive, evidence)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                time.time(),
                microscope,
                frame_id,
                seq,
                kind,
                rows_seen,
                status,
                state,
                json.dumps(confidences) if confidences is not None else None,
                latency_ms,
                detail,
                familiarity,
                archive,
                json.dumps(evidence) if evidence else None,
            ),
        )

    def command(
        self,
        command_id: str,
        microscope: str,
        frame_id: str,
        action: str,
        params: dict[str, Any],
        reason: dict[str, Any] | None,
        status: str,
        detail: str = "",
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO commands (id, microscope, frame_id, action, params, reason,"
            " status, detail, t_sent) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                command_id,
                microscope,
                frame_id,
                action,
                json.dumps(params),
                json.dumps(reason) if reason else None,
                status,
                detail,
                time.time(),
            ),
        )

    def reply(self, command_id: str, status: str, detail: str) -> None:
        self._write(
            "UPDATE commands SET status=?, detail=?, t_reply=? WHERE id=?",
            (status, detail, time.time(), command_id),
        )

    def operator(self, microscope: str, op: str, who: str, detail: str = "") -> None:
        """An operator command carried out on ``microscope``, and by whom."""
        self._write(
            "INSERT INTO operator (t, microscope, op, who, detail) VALUES (?,?,?,?,?)",
            (time.time(), microscope, op, who, detail),
        )

    def prune(self, before: float) -> None:
        """Drop frame rows older than unix time ``before`` (commands and gates are kept)."""
        self._write("DELETE FROM frames WHERE t < ?", (before,))

    def archived(self, microscope: str, frame_id: str) -> str | None:
        """The archive path of ``microscope``'s whole frame ``frame_id`` (None: not archived,
        or the journal cannot be read)."""
        try:
            row = self.db.execute(
                "SELECT archive FROM frames WHERE microscope = ? AND frame_id = ? AND kind ="
                " 'frame' AND archive IS NOT NULL ORDER BY n DESC LIMIT 1",
                (microscope, frame_id),
            ).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else str(row[0])

    def gate(self, microscope: str, state: dict[str, Any]) -> None:
        """Keep ``microscope``'s safety-gate state (replacing the one kept before)."""
        self._write(
            "INSERT OR REPLACE INTO gates (microscope, state, t) VALUES (?,?,?)",
            (microscope, json.dumps(state), time.time()),
        )

    def gate_state(self, microscope: str) -> dict[str, Any] | None:
        """The safety-gate state last kept for ``microscope`` (None: none, or unreadable)."""
        try:
            row = self.db.execute(
                "SELECT state FROM gates WHERE microscope = ?", (microscope,)
            ).fetchone()
            return None if row is None else dict(json.loads(row[0]))
        except (sqlite3.Error, ValueError, TypeError) as exc:
            log.error("journal: safety state unreadable", microscope=microscope, error=str(exc))
            return None

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """Run one write after any that are pending; on failure keep it for the next try."""
        self.pending.append((sql, args))
        if len(self.pending) > PENDING_MAX:
            self.pending.popleft()
            self.dropped += 1
        while self.pending:
            sql_, args_ = self.pending[0]
            try:
                self.db.execute(sql_, args_)
            except (sqlite3.Error, OverflowError, ValueError) as exc:
                self.failures += 1
                if str(exc) != self.last_error or self.failures % 100 == 1:
                    log.error(
                        "journal write failed; kept in memory and retried",
                        path=str(self.path),
                        error=str(exc),
                        pending=len(self.pending),
                    )
                self.last_error = str(exc)
                if not isinstance(exc, sqlite3.OperationalError):
                    self.pending.popleft()  # this row can never be written: not kept
                    self.dropped += 1
                    continue
                return
            self.pending.popleft()
            if self.last_error and not self.pending:
                log.info("journal writable again", path=str(self.path))
                self.last_error = ""

    def close(self) -> None:
        try:
            self._write("SELECT 1", ())  # one last try at what is pending
        finally:
            self.db.close()


def states(name: str) -> list[str]:
    """The states ``tipd journal --state NAME`` selects: ``good`` (every taxonomy's desirable
    classes), ``bad`` (every other class, and tip changes the scan lines found), or one state
    by name. Raises :class:`ValueError` naming the known ones."""
    good = sorted({c for t in TAXONOMIES.values() for c in t.desirable})
    every = {c for t in TAXONOMIES.values() for c in t.labels}
    if name == "good":
        return good
    if name == "bad":
        return sorted(every - set(good))
    known = sorted(every | {UNFAMILIAR, "unknown"})
    if name not in known:
        named = ", ".join(k for k in known if k != "good")
        raise ValueError(f"unknown state {name!r}; known: good, bad, {named}")
    return [name]


def query(
    path: Path,
    table: str = "frames",
    last: int = 20,
    states: Sequence[str] | None = None,
    since: float | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``table`` (newest last): the last ``last``, optionally of the given ``states``
    and ``kind`` (frames: ``frame``, ``window``, ...) or after unix time ``since``. Opens the
    file read-only."""
    if table not in ("frames", "commands", "operator"):
        raise ValueError(f"unknown table {table!r}; known: frames, commands, operator")
    if not path.is_file():
        raise FileNotFoundError(f"no journal at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    where: list[str] = []
    args: list[object] = []
    if states is not None and table == "frames":
        where.append(f"state IN ({', '.join('?' * len(states))})")
        args.extend(states)
    if kind is not None and table == "frames":
        where.append("kind = ?")
        args.append(kind)
    if since is not None:
        where.append(("t_sent" if table == "commands" else "t") + " >= ?")
        args.append(since)
    order = "t_sent" if table == "commands" else "n"
    sql = f"SELECT * FROM {table}" + (f" WHERE {' AND '.join(where)}" if where else "")
    sql += f" ORDER BY {order} DESC LIMIT ?"
    try:
        rows = [dict(r) for r in db.execute(sql, (*args, last))]
    finally:
        db.close()
    return rows[::-1]


#: columns holding unix times, written as ISO 8601 by :func:`readable`
TIMES = ("t", "t_sent", "t_reply")
#: columns holding JSON text, written as objects by :func:`readable`
OBJECTS = ("confidences", "params", "reason")


def readable(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its times as ISO 8601 (local time, with offset, ms) and its JSON columns
    as objects."""
    out = dict(row)
    for key in TIMES:
        if out.get(key) is not None:
            stamp = datetime.fromtimestamp(out[key]).astimezone()
            out[key] = stamp.isoformat(timespec="milliseconds")
    for key in OBJECTS:
        if isinstance(out.get(key), str):
            with contextlib.suppress(ValueError):  # else kept as the text it is
                out[key] = json.loads(out[key])
    return out


def as_json(row: dict[str, Any]) -> str:
    """One journal row as one line of JSON (:func:`readable`)."""
    return json.dumps(readable(row))


def write_csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    """``rows`` as CSV with a header row: ISO times; the confidences spread into one
    ``p_<label>`` column per label; params and reason as JSON text."""
    table = [readable(r) for r in rows]
    labels = sorted({k for r in table for k in (r.get("confidences") or {})})
    for r in table:
        conf = r.pop("confidences", None) or {}
        r.update({f"p_{k}": conf.get(k) for k in labels})
        for key in OBJECTS:
            if isinstance(r.get(key), dict | list):
                r[key] = json.dumps(r[key])
    fields = list(table[0]) if table else ["t", "microscope", "frame_id", "state"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
