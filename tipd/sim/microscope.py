"""The virtual microscope, without sockets: a persistent sample, a hidden evolving tip, a scan
that advances line by line, and the conditioning commands a controller obeys.

:class:`VirtualMicroscope` is deterministic for a given seed and sequence of calls; the server
in :mod:`tipd.sim.server` drives it in real time and puts it on the wire.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tipd.frames import Frame
from tipd.once import RepliesById
from tipd.protocol import CONDITIONING, Command, CrashParams, MoveParams, PulseParams, Reply
from tipd.synth.artefacts import (
    Artefacts,
    add_spikes,
    draw_artefacts,
    feedback_response,
    line_offsets,
    pink_noise,
)
from tipd.synth.generate import kinds_in_view, steps_in_view, truth_labels
from tipd.synth.geometry import ScanGrid
from tipd.synth.imaging import image
from tipd.synth.surfaces import Crater, Sample, default_params
from tipd.synth.tip import Tip
from tipd.taxonomy import taxonomy

from . import tipstate
from .tipstate import HiddenTip, TipRates

DEFAULT_SCAN_NM = {"hsi100": 20.0, "au111": 30.0, "cu111": 30.0}


@dataclass(frozen=True)
class SimLimits:
    """The virtual microscope's own hardware limits; commands beyond them are rejected.

    Wider than tipd's defaults on purpose (tipd's gate must hold first), close to the DeepSPM
    server's (bias ≤ 8.2 V there, pulses 20 ms–5 s, dips ≤ 30 nm).
    """

    max_bias_V: float = 10.0
    min_pulse_s: float = 0.001
    max_pulse_s: float = 5.0
    max_crash_nm: float = 30.0
    max_move_nm: float = 5000.0

    def refusal(self, command: Command) -> str | None:
        """Why ``command`` is outside the limits, or None when it is within them."""
        p = command.params
        if isinstance(p, PulseParams):
            if abs(p.bias_V) > self.max_bias_V:
                return f"pulse bias_V {p.bias_V} outside ±{self.max_bias_V} V"
            if not self.min_pulse_s <= p.width_s <= self.max_pulse_s:
                return f"pulse width_s {p.width_s} outside {self.min_pulse_s}–{self.max_pulse_s} s"
        elif isinstance(p, CrashParams):
            if p.depth_nm > self.max_crash_nm:
                return f"crash depth_nm {p.depth_nm} above {self.max_crash_nm} nm"
            if abs(p.bias_V) > self.max_bias_V:
                return f"crash bias_V {p.bias_V} outside ±{self.max_bias_V} V"
        elif isinstance(p, MoveParams) and math.hypot(p.dx_nm, p.dy_nm) > self.max_move_nm:
            return f"move of {math.hypot(p.dx_nm, p.dy_nm):.1f} nm beyond {self.max_move_nm} nm"
        return None


@dataclass
class ScanSettings:
    """``pixels`` square frames of ``scan_size_nm`` at ``line_time_s`` per line (forward scan
    only), published in chunks of ``chunk_lines`` lines. Bias (V) and setpoint (A) are
    reported in the headers."""

    pixels: int = 256
    scan_size_nm: float = 30.0
    line_time_s: float = 5.0 / 256
    chunk_lines: int = 16
    bias_V: float = 0.5
    setpoint_A: float = 100e-12


@dataclass
class TipChange:
    """A change of the tip during a frame: at ``row`` (and ``col``), why, and into what."""

    row: int
    col: int
    cause: str
    kind: str


@dataclass
class Execution:
    """What executing a command did: the ``reply``, how many ``seconds`` it took, and the truth
    ``record`` (before/after tip state) — None when the id had already been executed."""

    reply: Reply
    seconds: float
    record: dict[str, Any] | None


@dataclass
class _FrameState:
    frame_id: str
    seq: int
    grid: ScanGrid
    art: Artefacts
    data: np.ndarray  #: metres, NaN where not yet scanned
    tip_start: dict[str, Any]
    row: int = 0
    changes: list[TipChange] = field(default_factory=list)
    tips: list[Tip] = field(default_factory=list)
    #: the frame's 1/f noise (nm), drawn whole at the start: it runs on across chunks
    pink: np.ndarray | None = None


class VirtualMicroscope:
    """A microscope ``name`` scanning a persistent ``surface`` sample with a hidden tip."""

    def __init__(
        self,
        surface: str,
        seed: int = 0,
        settings: ScanSettings | None = None,
        rates: TipRates | None = None,
        start_tip: str = "sharp",
        name: str = "stm1",
        limits: SimLimits | None = None,
        executed: Path | None = None,
    ) -> None:
        """``executed``: the file that keeps executed command ids across a crash of the
        microscope (:mod:`tipd.once`); None keeps them in memory only."""
        self.tax = taxonomy(surface)
        self.surface = surface
        self.name = name
        self.rng = np.random.default_rng([seed & 0xFFFFFFFF, 99])
        self.settings = settings or ScanSettings(scan_size_nm=DEFAULT_SCAN_NM[surface])
        self.rates = rates or TipRates()
        self.limits = limits or SimLimits()
        self.sample = Sample(default_params(surface, self.rng), seed=seed)
        self.tip: HiddenTip = tipstate.make_tip(start_tip, surface, self.rng)
        self.position_nm = (0.0, 0.0)
        self.withdrawn = False
        self.seq = 0
        self._drift = (0.0, 0.0)
        self._creep = 0.0
        self._line_offset = 0.0
        self._z_offset = 0.0
        self.frame: _FrameState | None = None
        self._executed = RepliesById(path=executed)
        self.dropped: list[dict[str, Any]] = []  #: truth of frames abandoned mid-scan

    # ----------------------------------------------------------------- scanning

    def start_frame(self) -> None:
        """Begin a new frame at the current position."""
        s = self.settings
        size = (s.scan_size_nm, s.scan_size_nm)
        self._drift = (
            0.8 * self._drift[0] + float(self.rng.normal(0, 0.01 * s.scan_size_nm)),
            0.8 * self._drift[1] + float(self.rng.normal(0, 0.01 * s.scan_size_nm)),
        )
        grid = ScanGrid.regular(self.position_nm, size, (s.pixels, s.pixels)).distorted(
            self._drift, self._creep, max(3.0, 0.08 * s.pixels)
        )
        self._creep = 0.0
        art = draw_artefacts(self.rng, low_temperature=self.surface != "hsi100")
        self.frame = _FrameState(
            frame_id=f"{self.name}-{self.seq:06d}",
            seq=self.seq,
            grid=grid,
            art=art,
            data=np.full((s.pixels, s.pixels), np.nan),
            tip_start=self.tip.to_dict(),
            tips=[self.tip.imaging_tip],
            pink=pink_noise((s.pixels, s.pixels), self.rng, art.pink_nm),
        )
        self.seq += 1

    @property
    def scanning(self) -> bool:
        return self.frame is not None and not self.withdrawn

    def scan_lines(self, n: int) -> tuple[int, np.ndarray]:
        """Scan the next ``n`` lines (fewer at the frame's end): ``(first_row, heights_m)``,
        heights of shape ``(n, cols)`` in metres. The tip may change during any line."""
        f = self.frame
        if f is None or self.withdrawn:
            raise RuntimeError("not scanning: start a frame first")
        rows, cols = f.data.shape
        a, b = f.row, min(f.row + n, rows)
        out = np.empty((b - a, cols))
        seg_start, r = a, a
        while r < b:
            if self.rng.random() < tipstate.line_change_probability(self.tip, self.rates):
                col = int(self.rng.integers(0, cols))
                before = self.tip.imaging_tip
                if r > seg_start:
                    out[seg_start - a : r - a] = self._image(f.grid.rows(seg_start, r), before)
                self._change_tip(
                    tipstate.spontaneous_change(self.tip, self.rates, self.rng),
                    r,
                    col,
                    "spontaneous",
                )
                line = self._image(f.grid.rows(r, r + 1), self.tip.imaging_tip)
                if col > 0:
                    line[0, :col] = self._image(f.grid.rows(r, r + 1), before)[0, :col]
                out[r - a] = line[0]
                seg_start = r + 1
            r += 1
        if b > seg_start:
            out[seg_start - a : b - a] = self._image(
                f.grid.rows(seg_start, b), self.tip.imaging_tip
            )
        recorded = self._artefacts(out, a)
        f.data[a:b] = recorded * 1e-9
        f.row = b
        return a, f.data[a:b]

    def _image(self, grid: ScanGrid, tip: Tip) -> np.ndarray:
        return image(self.sample, grid, tip) + self._z_offset

    def _artefacts(self, z: np.ndarray, first_row: int) -> np.ndarray:
        f = self.frame
        assert f is not None
        art = f.art
        n, cols = z.shape
        out = feedback_response(z, art.feedback_r, art.feedback_w)
        du, dv = f.grid.pixel_nm
        x = np.arange(cols) * du
        y = (first_row + np.arange(n)) * dv
        out = out + art.tilt[0] * x[None, :] + art.tilt[1] * y[:, None]
        offsets = self._line_offset + line_offsets(
            n, self.rng, art.line_walk_nm, art.line_jitter_nm
        )
        self._line_offset = float(offsets[-1])
        out += offsets[:, None]
        if f.pink is not None:  # one 1/f series over the whole frame, not one per chunk
            out += f.pink[first_row : first_row + n]
        out += self.rng.normal(0, art.white_nm, z.shape)
        if self.tip.contaminated:  # loose material on the apex: a noisy, streaky junction
            out += self.rng.normal(0, 3 * art.white_nm + 0.003, z.shape)
            add_spikes(out, self.rng, int(self.rng.poisson(0.05 * n)), 0.2)
        add_spikes(
            out, self.rng, int(self.rng.poisson(art.spikes * n / f.data.shape[0])), art.spike_nm
        )
        result: np.ndarray = out
        return result

    def _change_tip(self, new: HiddenTip, row: int, col: int, cause: str) -> None:
        self.tip = new
        self._z_offset += float(self.rng.normal(0, 0.1))
        if self.frame is not None:
            self.frame.changes.append(TipChange(row, col, cause, new.kind))
            self.frame.tips.append(new.imaging_tip)

    @property
    def frame_complete(self) -> bool:
        return self.frame is not None and self.frame.row >= self.frame.data.shape[0]

    def finish_frame(self, t_acquired: float | None = None) -> tuple[Frame, dict[str, Any]]:
        """The completed frame and its truth record; the tip then ages by one frame."""
        f = self.frame
        if f is None or not self.frame_complete:
            raise RuntimeError("the frame is not complete")
        frame = self.frame_message(f.data, t_acquired)
        truth = self._truth(f, frame.t_acquired)
        self.tip = tipstate.wear(self.tip, self.rates, self.rng)
        self.frame = None
        return frame, truth

    def _truth(self, f: _FrameState, t: float) -> dict[str, Any]:
        """The truth record of frame ``f`` as scanned so far (``rows`` of it)."""
        impurity_kind = "cluster" if self.surface == "hsi100" else "impurity"
        labels = truth_labels(
            self.tax,
            f.tips,
            changed=bool(f.changes),
            corrupted=False,
            steps=steps_in_view(self.sample, f.grid),
            impurities=kinds_in_view(self.sample, f.grid, impurity_kind),
            contaminated=self.tip.contaminated,
        )
        return {
            "record": "frame",
            "microscope": self.name,
            "frame_id": f.frame_id,
            "seq": f.seq,
            "t": t,
            "rows": f.row,
            "complete": f.row >= f.data.shape[0],
            "position_nm": list(self.position_nm),
            "tip_start": f.tip_start,
            "tip_end": self.tip.to_dict(),
            "kind": self.tip.kind,
            "good": self.tip.good and not f.changes,
            "changes": [c.__dict__ for c in f.changes],
            "labels": [n for n, v in zip(self.tax.labels, labels, strict=True) if v],
            "craters": len(self.sample.craters),
        }

    def _drop_frame(self) -> None:
        """Abandon the frame in progress (a move, rescan or withdraw); its truth so far goes
        to :attr:`dropped` (the server writes it), so the truth log misses no scanned line."""
        f = self.frame
        if f is not None and f.row > 0:
            self.dropped.append(self._truth(f, time.time()))
        self.frame = None

    def frame_message(self, data: np.ndarray, t_acquired: float | None = None) -> Frame:
        """A :class:`Frame` with this microscope's metadata around ``data`` (metres)."""
        f = self.frame
        assert f is not None
        s = self.settings
        return Frame(
            data=data,
            scan_size_nm=(s.scan_size_nm, s.scan_size_nm),
            microscope=self.name,
            frame_id=f.frame_id,
            seq=f.seq,
            t_acquired=time.time() if t_acquired is None else t_acquired,
            bias_V=s.bias_V,
            setpoint_A=s.setpoint_A,
            surface=self.surface,
            position_nm=self.position_nm,
        )

    # ----------------------------------------------------------------- commands

    def remember(self, record: dict[str, Any]) -> None:
        """Take back an executed command from a truth record (after a restart), so that a
        resent id is answered from memory and not executed again."""
        reply = Reply(
            id=record["id"], status=record["status"], detail=record["detail"], t_done=record["t"]
        )
        self._executed.remember(reply)

    def execute(self, command: Command) -> Execution:
        """Execute ``command`` once.

        A command id already executed gets its first reply again and nothing is redone (its
        ``record`` is None). Out-of-limit commands, commands for another microscope and
        conditioning while withdrawn are rejected.
        """
        done = self._executed.get(command.id)
        if done is not None:
            return Execution(done, 0.0, None)
        refusal = self.limits.refusal(command)
        if command.microscope != self.name:
            refusal = f"this is microscope {self.name!r}, not {command.microscope!r}"
        elif refusal is None and self.withdrawn and command.action in CONDITIONING:
            refusal = "the tip is withdrawn: move or rescan to approach first"
        before = self.tip.to_dict()
        self._executed.begin(command.id)  # before acting: a crash from here on is not redone
        if refusal is not None:
            reply, seconds = (
                Reply(id=command.id, status="rejected", detail=refusal, t_done=time.time()),
                0.0,
            )
        else:
            detail, seconds = self._apply(command)
            reply = Reply(id=command.id, status="done", detail=detail, t_done=time.time())
        self._executed.remember(reply)
        record = {
            "record": "command",
            "microscope": self.name,
            "id": command.id,
            "action": command.action,
            "params": command.params.model_dump(),
            "status": reply.status,
            "detail": reply.detail,
            "t": reply.t_done,
            "tip_before": before,
            "tip_after": self.tip.to_dict(),
            "position_nm": list(self.position_nm),
            "frame_id": self.frame.frame_id if self.frame else None,
            "row": self.frame.row if self.frame else None,
        }
        return Execution(reply, seconds, record)

    def _apply(self, command: Command) -> tuple[str, float]:
        p = command.params
        row = self.frame.row if self.frame else 0
        old = self.tip.kind
        if isinstance(p, PulseParams):
            self._change_tip(
                tipstate.pulse_outcome(self.tip, p.bias_V, p.width_s, self.rng), row, 0, "pulse"
            )
            return (
                f"pulse {p.bias_V:+.2f} V {p.width_s * 1e3:.0f} ms: tip {old} -> {self.tip.kind}",
                p.width_s,
            )
        if isinstance(p, CrashParams):
            x, y = self._tip_position()
            depth, radius = tipstate.crater_size(p.depth_nm)
            self.sample.craters.append(Crater(x, y, depth, radius))
            self._change_tip(
                tipstate.crash_outcome(self.tip, p.depth_nm, self.rng), row, 0, "crash"
            )
            return (
                f"crash {p.depth_nm:.2f} nm at ({x:.1f}, {y:.1f}) nm: tip {old} -> "
                f"{self.tip.kind}, crater {depth:.2f} nm deep"
            ), 0.5
        if isinstance(p, MoveParams):
            self.position_nm = (self.position_nm[0] + p.dx_nm, self.position_nm[1] + p.dy_nm)
            self._creep = min(5.0, 0.01 * math.hypot(p.dx_nm, p.dy_nm))
            self.withdrawn = False
            self._drop_frame()
            return f"moved to ({self.position_nm[0]:.1f}, {self.position_nm[1]:.1f}) nm", 0.2
        if command.action == "rescan":
            self.withdrawn = False
            self._drop_frame()
            return "rescanning", 0.0
        if command.action == "withdraw":
            self.withdrawn = True
            self._drop_frame()
            return "withdrawn; move or rescan to approach", 0.1
        raise AssertionError(f"unhandled action {command.action}")

    def _tip_position(self) -> tuple[float, float]:
        """Sample position (nm) of the tip: the middle of the line being scanned."""
        f = self.frame
        if f is None:
            return self.position_nm
        row = min(f.row, f.data.shape[0] - 1)
        g = f.grid.rows(row, row + 1)
        eu, ev = g.axes
        u, v = float(g.shift[0]), float(g.v[0])
        return (g.centre_nm[0] + eu[0] * u + ev[0] * v, g.centre_nm[1] + eu[1] * u + ev[1] * v)
