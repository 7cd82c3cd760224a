"""Memory of the sample: what each area looked like before, so that a frame is judged against
its own surface.

Per microscope, tipd keeps for each area it scans (its position and scan size) a *reference*:
the frame an operator marked good (``tipd reference``, ``tipd run --reference``, the web page's
"this tip is good"), else the first frame of the area (the first after a move, which is also the
first after a conditioning), replaced by a later one that is sharper. A later frame of the same
area is compared with it:

* **the same surface?** the two frames' central squares (:mod:`.view`) are aligned
  (cross-correlation, any shift up to a quarter of the side) and correlated; below
  :data:`SAME_AREA` they show different things (the sample moved, or the area changed) and
  are not compared;
* **changed beyond noise?** the aligned difference, each line's offset removed (a new tip length
  moves every line alike), in units of the frames' noise; and whether it *rose*: a tip images
  the surface as a dilation by its shape, so a blunter apex or a second one only ever raises
  the image over what a sharp apex recorded, while a rescan by the same tip differs by noise,
  up as much as down;
* **from which line on?** the mean difference of the lines after each line against those
  before it: a tip change leaves the lines before it as they were and changes every line after
  it;
* **sharper or blunter, an echo new?** the frame's sharpness (:mod:`.sharpness`) and echo
  (:mod:`.echo`) against the reference's.

What the reference frame showed itself is the surface, where the later frame shows nothing new
(:func:`tipd.evidence.explained_by`): the same frame again, a rescan that differs by no more than
noise from a reference not surely bad, and a jump of the lines at the line where the reference's
lines jumped (a tip change is an event in time; a step stays where it is).

Pure computation over a bounded store: :data:`AREAS` areas per microscope, the least recently
scanned forgotten first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft as sfft

from tipd.frames import Frame
from tipd.physics.echo import Echo
from tipd.physics.sharpness import Sharpness

#: areas remembered per microscope
AREAS = 32
#: aligned coarse images correlated less than this show different things
SAME_AREA = 0.6
#: a frame's position may move by this share of its scan size and still be the same area
SAME_PLACE = 0.1
#: a frame none of whose pixels but 1 in 200 differs from the reference by more than this many
#: times the noise is unchanged (with its lines, :attr:`Comparison.unchanged`)
UNCHANGED_TAIL = 8.0


@dataclass(frozen=True)
class Seen:
    """What tipd keeps of one frame: the part of it the physical tests read (its central
    square, line-flattened, :mod:`.view`) and its noise, and what the tests and the decision
    found in it (``faults``: each fault's probability)."""

    frame_id: str
    image: np.ndarray  #: (rows, cols), line-flattened heights (m), float32
    noise_m: float  #: white noise between neighbouring pixels (m)
    sharpness: Sharpness | None
    echo: Echo | None
    faults: dict[str, float]
    operator: bool = False  #: an operator marked it good
    first_row: int = 0  #: the frame row of the image's first row
    bad: float = 0.0  #: its decision's ``bad``
    jump_row: int | None = None  #: where its lines' height jumped (a tip change, or a step)


def area_key(frame: Frame) -> tuple[int, int, int, int]:
    """The area of a frame: its scan size (to 1 %) and its position (to :data:`SAME_PLACE` of
    the size)."""
    w, h = frame.scan_size_nm
    step = max(w, h) * SAME_PLACE
    x, y = frame.position_nm
    return (
        round(math.log(w) * 100),
        round(math.log(h) * 100),
        round(x / step),
        round(y / step),
    )


@dataclass(frozen=True)
class Comparison:
    """A frame against its area's reference (see the module): ``correlation`` once aligned
    (``shift_px`` (dy, dx)), the aligned difference (each line's offset removed) in noise units
    (``change``: its median line's RMS), how much more it rose than fell (``raised``: ln of its
    99th percentile over its 1st, from the median; a new tip's image lies over the old one's,
    as a dilation does), and its largest split between lines (``row``: the first line, in the
    frame's rows, of the part that changed; ``split``: how many times the difference after it
    exceeds the one before)."""

    reference: Seen
    correlation: float
    shift_px: tuple[int, int]
    change: float
    raised: float
    row: int | None
    split: float
    lines_changed: float = 0.0  #: share of lines whose difference exceeds 3 × the noise
    tail: float = 0.0  #: the 99.5th percentile of the difference's size, noise units
    identical: bool = False  #: the very same frame again

    @property
    def unchanged(self) -> bool:
        """The frame shows what the reference showed: no line and hardly a pixel differs by
        more than a rescan by the same tip would (noise, a little drift)."""
        return self.same_area and self.lines_changed < 0.02 and self.tail < UNCHANGED_TAIL

    @property
    def same_area(self) -> bool:
        return self.correlation >= SAME_AREA


def _align(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """The shift (dy, dx), within a quarter of the side, that best lays ``b`` on ``a``, and the
    correlation of the overlap there."""
    n, m = a.shape
    fa = sfft.rfft2(a - a.mean())
    fb = sfft.rfft2(b - b.mean())
    xc = sfft.irfft2(fa * np.conj(fb), s=a.shape)
    lim = min(n, m) // 4
    near = np.r_[0 : lim + 1, -lim:0]  # shifts -lim … lim, as they lie in the unshifted array
    win = xc[np.ix_(near % n, near % m)]
    k = int(np.argmax(win))
    dy, dx = (int(near[i]) for i in divmod(k, len(near)))
    pa, pb = _overlap(a, b, dy, dx)
    sa, sb = pa.std(), pb.std()
    if sa == 0 or sb == 0:
        return dy, dx, 1.0 if np.allclose(pa, pb) else 0.0
    corr = float(np.mean((pa - pa.mean()) * (pb - pb.mean())) / (sa * sb))
    return dy, dx, corr


def _overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of ``a`` and ``b`` that cover the same place when ``b`` is moved by
    ``(dy, dx)`` (``a[y, x]`` ↔ ``b[y − dy, x − dx]``)."""
    n, m = a.shape
    ya, yb = max(0, dy), max(0, -dy)
    xa, xb = max(0, dx), max(0, -dx)
    h, w = n - abs(dy), m - abs(dx)
    return a[ya : ya + h, xa : xa + w], b[yb : yb + h, xb : xb + w]


def compare(seen: Seen, reference: Seen) -> Comparison:
    """``seen`` against ``reference`` of its area (see :class:`Comparison`)."""
    if seen.image.shape != reference.image.shape:
        return Comparison(reference, 0.0, (0, 0), 0.0, 0.0, None, 1.0, 1.0, np.inf)
    if np.array_equal(seen.image, reference.image):  # the very same frame, sent again
        return Comparison(reference, 1.0, (0, 0), 0.0, 0.0, None, 1.0, 0.0, 0.0, True)
    dy, dx, corr = _align(seen.image, reference.image)
    a, b = _overlap(seen.image, reference.image, dy, dx)
    diff = (a - b).astype(np.float64)
    diff = diff - np.median(diff, axis=1, keepdims=True)  # a new tip length moves all alike
    noise = math.hypot(seen.noise_m, reference.noise_m) or 1e-30
    per_line = np.sqrt(np.mean(diff**2, axis=1)) / noise
    change = float(np.median(per_line))
    lines_changed = float(np.mean(per_line > 3.0))
    tail = float(np.percentile(np.abs(diff), 99.5)) / noise
    lo, mid, hi = np.percentile(diff, [1, 50, 99])
    raised = math.log((hi - mid + noise) / (mid - lo + noise))
    row, split = None, 1.0
    n = len(per_line)
    if n >= 16:
        sums = np.cumsum(per_line)
        r = np.arange(8, n - 8)
        before = sums[r - 1] / r
        after = (sums[-1] - sums[r - 1]) / (n - r)
        ratio = (after + 0.5) / (before + 0.5)
        k = int(np.argmax(ratio))
        split, row = float(ratio[k]), seen.first_row + int(r[k]) + max(0, dy)
    return Comparison(reference, corr, (dy, dx), change, raised, row, split, lines_changed, tail)


@dataclass
class SampleMemory:
    """One microscope's memory: each area's reference and its latest frame, least recently
    scanned first."""

    areas: OrderedDict[tuple[int, int, int, int], Seen] = field(default_factory=OrderedDict)
    latest: OrderedDict[str, tuple[tuple[int, int, int, int], Seen]] = field(
        default_factory=OrderedDict
    )  #: the last frames seen, by frame id (for an operator's "this one was good")

    def reference(self, frame: Frame) -> Seen | None:
        """The reference of ``frame``'s area, if any."""
        key = area_key(frame)
        ref = self.areas.get(key)
        if ref is not None:
            self.areas.move_to_end(key)
        return ref

    def keep(self, frame: Frame, seen: Seen, adopt: bool) -> None:
        """Remember ``seen`` (of ``frame``) as one of the latest frames and, with ``adopt``,
        as its area's reference (an operator's reference is replaced only by an operator's)."""
        key = area_key(frame)
        self.latest[seen.frame_id] = (key, seen)
        while len(self.latest) > 8:
            self.latest.popitem(last=False)
        current = self.areas.get(key)
        if adopt and (current is None or not current.operator or seen.operator):
            self.areas[key] = seen
            self.areas.move_to_end(key)
        while len(self.areas) > AREAS:
            self.areas.popitem(last=False)

    def mark_good(self, frame_id: str | None = None) -> Seen | None:
        """An operator says frame ``frame_id`` (one of the latest; None: the latest of all)
        shows a good tip: it becomes its area's reference. The frame, or None when it is not
        among the latest frames."""
        if frame_id is None:
            if not self.latest:
                return None
            frame_id = next(reversed(self.latest))
        found = self.latest.get(frame_id)
        if found is None:
            return None
        key, seen = found
        marked = replace(seen, faults={}, operator=True, bad=0.0)
        self.areas[key] = marked
        self.areas.move_to_end(key)
        return marked

    def pin(self, frame: Frame, seen: Seen) -> None:
        """``seen`` (of ``frame``, from a file or the archive) is the reference of
        ``frame``'s area, as an operator's."""
        key = area_key(frame)
        self.areas[key] = replace(seen, faults={}, operator=True, bad=0.0)
        self.areas.move_to_end(key)
