"""What the web application knows of the daemon: built from its event stream alone.

:class:`Hub` takes each message of the events socket (``state``, ``action``, ``error``,
``health``, ``operator``, and the mirrored ``frame``/``lines`` messages) and keeps, per
microscope, the latest decision and the frame being scanned as an 8-bit image, plus a timeline
of what happened. Each message also becomes a small JSON message for the browsers
(:meth:`Hub.apply` returns them).
"""

from __future__ import annotations

import base64
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tipd.events import describe
from tipd.preprocess import flatten_lines
from tipd.protocol import (
    FrameHeader,
    HealthEvent,
    ProtocolError,
    StateEvent,
    _Event,
    decode_event,
    decode_frame,
)
from tipd.web.metrics import action_outcome

#: the live image is at most this many columns wide (every k-th column kept)
MAX_COLS = 512
#: timeline entries kept
TIMELINE = 300


@dataclass(frozen=True)
class Event:
    """One event as received: its kind (``state``, ``action``, …) and its JSON fields."""

    kind: str
    body: dict[str, Any]


@dataclass
class LiveImage:
    """The frame being scanned on one microscope, as 8-bit rows on one height scale."""

    frame_id: str
    shape: tuple[int, int]  #: (rows, columns drawn)
    step: int  #: every ``step``-th column of the frame is drawn
    scan_size_nm: tuple[float, float]
    lo: float  #: heights (after each line's own fit is removed) at 0 ...
    hi: float  #: ... and 255
    pixels: np.ndarray  #: uint8 (rows, columns drawn); 0 where not scanned yet
    rows_seen: int = 0

    def to_message(self, microscope: str, first: int, n: int, t_sent: float) -> dict[str, Any]:
        """Rows ``first .. first + n - 1`` for the browsers."""
        rows = self.pixels[first : first + n]
        return {
            "type": "lines",
            "microscope": microscope,
            "frame_id": self.frame_id,
            "shape": list(self.shape),
            "first_row": first,
            "n_rows": n,
            "scan_size_nm": list(self.scan_size_nm),
            "dz_nm": (self.hi - self.lo) * 1e9,
            "data": base64.b64encode(np.ascontiguousarray(rows).tobytes()).decode("ascii"),
            "t_sent": t_sent,
        }


def height_scale(rows: np.ndarray) -> tuple[float, float]:
    """The height range (metres) the live image maps onto 0–255, from a frame's first rows
    (flattened line by line): their 1–99 % percentiles, widened by a quarter each side."""
    ok = rows[np.isfinite(rows)]
    if ok.size == 0:
        return -1e-10, 1e-10
    lo, hi = np.percentile(ok, [1, 99])
    if not hi > lo:
        lo, hi = lo - 1e-10, hi + 1e-10
    pad = (hi - lo) * 0.25
    return float(lo - pad), float(hi + pad)


def to_pixels(rows: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``rows`` (flattened heights) on the 0–255 scale of ``lo``..``hi``; NaN → 0."""
    unit = np.clip((np.nan_to_num(rows, nan=lo) - lo) / (hi - lo), 0, 1)
    out: np.ndarray = (unit * 255).astype(np.uint8)
    return out


@dataclass
class Hub:
    """The daemon as seen on its events socket (see the module docstring)."""

    states: dict[str, dict[str, Any]] = field(default_factory=dict)  #: latest whole frame
    images: dict[str, LiveImage] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)  #: the latest periodic health
    #: the daemon as last heard: ``answering`` (None: not asked yet), its ``state``, ``why``,
    #: ``advisory``, and the operator ``endpoint`` asked (:meth:`daemon_heard`)
    daemon: dict[str, Any] = field(default_factory=lambda: {"type": "daemon", "answering": None})
    timeline: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TIMELINE))
    undecodable: int = 0

    def apply(self, parts: list[bytes]) -> tuple[list[dict[str, Any]], Event | None]:
        """Take one message of the events or preview socket: the messages for the browsers,
        and the event it held (None: a frame, a chunk of lines, or nothing valid)."""
        topic = bytes(parts[0]).decode("ascii", "replace")
        kind = topic.split(".", 1)[0]
        try:
            if kind in ("frame", "lines"):
                _, header, data = decode_frame(parts)
                return self._lines(header, data, whole=kind == "frame"), None
            event = decode_event(parts)
        except ProtocolError:
            self.undecodable += 1
            return [], None
        return self._event(topic, kind, event), Event(kind, event.model_dump(mode="json"))

    def _event(self, topic: str, kind: str, event: _Event) -> list[dict[str, Any]]:
        body = event.model_dump(mode="json")
        out: list[dict[str, Any]] = []
        if isinstance(event, StateEvent):
            if event.kind == "frame":
                self.states[event.microscope] = body
            out.append({"type": "state", **body})
        elif isinstance(event, HealthEvent):
            if event.microscope == "*":
                self.health = body
                if event.state is not None:
                    out += self.daemon_heard(event.state, event.why, event.advisory)
            out.append({"type": "health", **body})
        if not (isinstance(event, StateEvent) and event.kind == "window"):
            entry = {
                "type": "timeline",
                "kind": kind,
                "microscope": event.microscope,
                "t": event.t,
                "text": describe(topic, event),
                "alarm": _alarming(kind, body),
            }
            if kind != "health" or entry["alarm"]:  # periodic health only when it matters
                self.timeline.append(entry)
                out.append(entry)
        return out

    def _lines(self, header: FrameHeader, data: np.ndarray, whole: bool) -> list[dict[str, Any]]:
        mic = header.microscope
        img = self.images.get(mic)
        if whole and img is not None and img.frame_id == header.frame_id:
            return []  # drawn already, line by line
        flat = flatten_lines(np.asarray(data, dtype=np.float64))
        rows, cols = header.shape
        step = max(1, -(-cols // MAX_COLS))
        if img is None or img.frame_id != header.frame_id or img.shape[0] != rows:
            lo, hi = height_scale(flat)
            width = len(range(0, cols, step))
            img = LiveImage(
                header.frame_id,
                (rows, width),
                step,
                (float(header.scan_size_nm[0]), float(header.scan_size_nm[1])),
                lo,
                hi,
                np.zeros((rows, width), dtype=np.uint8),
            )
            self.images[mic] = img
        first, n = header.first_row, header.n_rows
        img.pixels[first : first + n] = to_pixels(flat[:, ::step], img.lo, img.hi)
        img.rows_seen = max(img.rows_seen, first + n)
        return [img.to_message(mic, first, n, header.t_acquired)]

    def daemon_heard(
        self,
        state: str | None,
        why: list[str] | None = None,
        advisory: bool | None = None,
        endpoint: str | None = None,
    ) -> list[dict[str, Any]]:
        """What the daemon said of itself (a health event, or its answer to ``status``), or
        that nothing answered at ``endpoint`` (``state`` None): the ``daemon`` message for
        the browsers when that changes what they show, else nothing."""
        known = {**self.daemon}
        if endpoint is not None:
            known["endpoint"] = endpoint
        if state is None:
            known.update(answering=False, state=None, why=[], advisory=None)
        else:
            known.update(answering=True, state=state, why=list(why or []), advisory=advisory)
        changed = known != self.daemon
        self.daemon = known
        return [dict(known)] if changed else []

    def snapshot(self) -> list[dict[str, Any]]:
        """Everything a browser that connects now needs, as messages."""
        out: list[dict[str, Any]] = [dict(self.daemon)]
        for mic, img in self.images.items():
            out.append(img.to_message(mic, 0, img.rows_seen, time.time()))
        for body in self.states.values():
            out.append({"type": "state", **body})
        if self.health:
            out.append({"type": "health", **self.health})
        out.extend(self.timeline)
        return out


def _alarming(kind: str, body: dict[str, Any]) -> bool:
    """Whether a timeline entry is one to notice: an error, a refusal or failure, an operator
    command, a health event that names a blind, held or waiting microscope."""
    if kind in ("error", "operator"):
        return True
    if kind == "action":
        return action_outcome(body) not in ("sent", "done", "advisory")
    if kind == "health":
        return bool(body.get("blind") or body.get("needs_operator") or body.get("stopped"))
    return False
