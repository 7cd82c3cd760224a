"""From messages on the frame socket to what the daemon must do: frames and windows to decide,
frames to skip, and rejections to report.

Every message is decoded and checked (:func:`decode`) before anything else. A whole frame is
decided as it is, unless a newer message of its microscope was waiting behind it (then it is
journaled as skipped). Line chunks are assembled (:class:`tipd.frames.LineAssembler`); every
``window_every`` new lines, once ``window_lines`` are in (or the whole frame, if shorter), the
newest ``window_lines`` rows are decided as a window, so a fault shows before the frame ends.
No I/O here: :class:`tipd.service.Daemon` reports, decides and journals what comes out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tipd.frames import Frame
from tipd.microscopes import Microscope, Microscopes
from tipd.modelset import ModelSet
from tipd.protocol import FrameHeader, ProtocolError, check_finite_array, decode_frame

Decoded = tuple[str, FrameHeader, np.ndarray] | ProtocolError


def decode(parts: list[bytes]) -> Decoded:
    """A frame message decoded and checked, or the :class:`ProtocolError` saying why not.

    The error returned is a fresh one, with no traceback or context: a caught exception's
    traceback holds the frames it passed through, and with them the batch of messages being
    read, a reference cycle that only the cyclic garbage collector frees (under a flood of
    bad messages, tens of megabytes late)."""
    try:
        kind, header, data = decode_frame(parts)
        check_finite_array(data)
    except ProtocolError as exc:
        return ProtocolError(str(exc))
    return kind, header, data


@dataclass(frozen=True)
class Work:
    """A whole frame (``kind`` frame) or the newest rows of one in progress (window, from
    frame row ``first_row``) of microscope ``mic`` to decide; ``rows_seen`` of the frame's
    rows have arrived."""

    mic: Microscope
    frame: Frame
    header: FrameHeader
    rows_seen: int
    kind: Literal["frame", "window"]
    first_row: int = 0


@dataclass(frozen=True)
class Skipped:
    """A whole frame of ``mic`` not decided: a newer one was waiting."""

    mic: Microscope
    header: FrameHeader


@dataclass(frozen=True)
class Rejected:
    """A message (or part of one) refused: ``what`` kind of error, ``detail`` why."""

    microscope: str
    what: str
    detail: str
    frame_id: str | None = None


@dataclass
class Taken:
    """What one message asks for: ``mic`` is its microscope once accepted (its message may be
    mirrored to dashboards), ``items`` in order."""

    mic: Microscope | None = None
    items: list[Work | Skipped | Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class Windows:
    """When line chunks are decided mid-frame: ``lines`` newest rows, every ``every`` lines."""

    lines: int = 64
    every: int = 16


class Intake:
    """The daemon's reading of messages (see the module): into ``mics``, judged against the
    current ``models``, counted in ``counters``."""

    def __init__(
        self,
        mics: Microscopes,
        models: Callable[[], ModelSet],
        counters: Counter[str],
    ) -> None:
        self.mics = mics
        self.models = models
        self.counters = counters
        self.unknown_surfaces: set[str] = set()  #: microscope:surface pairs reported once

    def take(
        self,
        parts: list[bytes],
        decoded: Decoded,
        newest: bool,
        allowed: list[str],
        max_microscopes: int,
        windows: Windows,
    ) -> Taken:
        """What message ``parts`` (``decoded``: :func:`decode` of it) asks for; ``newest``:
        no newer message of its microscope was waiting behind it. ``allowed``: the microscope
        ids served (empty: any, up to ``max_microscopes``)."""
        self.counters["messages"] += 1
        if isinstance(decoded, ProtocolError):
            return Taken(items=[Rejected(_topic_microscope(parts), "protocol", str(decoded))])
        kind, header, data = decoded
        name = header.microscope
        if allowed and name not in allowed:
            detail = f"unknown microscope {name!r}; configured: {allowed}"
            return Taken(items=[Rejected(name, "microscope", detail, header.frame_id)])
        if name not in self.mics and len(self.mics) >= max_microscopes:
            detail = (
                f"already serving {len(self.mics)} microscopes (max_microscopes); "
                "list the ids to serve in `microscopes`"
            )
            return Taken(items=[Rejected(name, "microscope", detail, header.frame_id)])
        mic = self.mics.get(name)
        mic.position_nm = (float(header.position_nm[0]), float(header.position_nm[1]))
        taken = Taken(mic)
        surface = self._unknown_surface(header)
        if surface is not None:
            taken.items.append(surface)
        if kind == "frame":
            self.counters["frames"] += 1
            if not newest:
                self.counters["skipped"] += 1
                taken.items.append(Skipped(mic, header))
            else:
                frame = Frame.from_header(header, data)
                taken.items.append(Work(mic, frame, header, header.shape[0], "frame"))
            return taken
        self.counters["chunks"] += 1
        try:
            partial = mic.assembler.add(header, data)
        except ProtocolError as exc:
            taken.items.append(Rejected(name, "protocol", str(exc), header.frame_id))
            return taken
        if not newest:
            return taken
        seen, last = partial.rows_seen, mic.classified_rows.get(header.frame_id, 0)
        if seen < min(windows.lines, header.shape[0]) or seen - last < windows.every:
            return taken
        mic.classified_rows[header.frame_id] = seen
        if len(mic.classified_rows) > 8:
            mic.classified_rows.pop(next(iter(mic.classified_rows)))
        stop = partial.last_row + 1
        first = max(0, stop - windows.lines)
        window = partial.frame.data[first:stop]
        if np.isfinite(window).any():
            frame = partial.frame.replace(data=window)
            taken.items.append(Work(mic, frame, header, seen, "window", first))
        return taken

    def _unknown_surface(self, header: FrameHeader) -> Rejected | None:
        """The first frame of a microscope naming a surface no model is for: reported once."""
        if header.surface is None:
            return None
        models = self.models()
        if models.knows(header.surface):
            return None
        key = f"{header.microscope}:{header.surface}"
        if key in self.unknown_surfaces:
            return None
        self.unknown_surfaces.add(key)
        default = models.default.manifest.name
        detail = (
            f"no model for surface {header.surface!r}; classified with the default model "
            f"{default!r}"
        )
        return Rejected(header.microscope, "surface", detail, header.frame_id)


def _topic_microscope(parts: list[bytes]) -> str:
    """The microscope a message's topic names, where it names a plausible one; else ``?``."""
    if parts and isinstance(parts[0], bytes) and b"." in parts[0]:
        candidate = parts[0].split(b".", 1)[1].decode("ascii", "replace")
        if candidate.replace("-", "").replace("_", "").isalnum() and len(candidate) <= 64:
            return candidate
    return "?"
