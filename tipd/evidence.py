"""The evidence behind a decision, each source with a calibrated probability and a reason a
microscopist can check, and one decision from all of it.

Sources:

* ``nets``: the model's classes, where the frame is familiar (:mod:`tipd.ensemble`);
* ``echo``: a shifted, weaker copy of the frame's protrusions, a double tip
  (:mod:`tipd.physics.echo`);
* ``sharpness``: peaks rounder than the valleys between them, a blunt tip
  (:mod:`tipd.physics.sharpness`);
* ``lines``: the lines' height jumping at one line and staying there, a tip change
  (:mod:`tipd.scanlines`); ``texture``: the lines' texture changing at one line
  (:mod:`tipd.physics.linechange`);
* ``memory``: the frame against the reference of its area (:mod:`tipd.physics.memory`): a tip
  change from one line on, resolution lost, an echo that was not there; and what the reference
  showed itself, which is the surface and no evidence against the tip.

Each physical probability is a logistic curve of the detector's raw measure, fitted on real
surfaces imaged by known tips (``bench/real_surfaces.py --fit``, every good real scan in reach
re-imaged by simulated double, blunt and changing tips; the curves' figures are measured leaving
each source out).

One decision (:func:`combine`): the nets speak where the frame is familiar and the physics does
not contradict them (a detector that could tell and found nothing, for the fault the nets
name); the physical detectors speak everywhere; evidence the area's reference frame showed as
strongly is the surface's. ``bad`` is the strongest fault's probability (on a familiar frame
at least 1 − the nets' good confidence, unless the physics contradicts every fault they name);
a frame about which nothing can tell stays at :data:`tipd.ensemble.UNSURE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tipd.ensemble import UNSURE, Decision
from tipd.frames import Frame
from tipd.models import Manifest
from tipd.physics.echo import Echo, echo
from tipd.physics.linechange import TextureChange, texture_change
from tipd.physics.memory import Comparison, Seen
from tipd.physics.sharpness import Sharpness, sharpness
from tipd.physics.view import View, view
from tipd.scanlines import TipChangeEvidence, tip_change_evidence
from tipd.taxonomy import UNFAMILIAR

#: the tip faults physics can see
FAULTS = ("double_tip", "blunt", "tip_change")
#: a certain detector below this probability contradicts the nets' naming its fault
CONTRADICTS = 0.25
#: what the nets may say of a fault the physics denies or the surface explains: below even odds
CONTRADICTED_CAP = 0.45
#: the most one frame's own evidence may say alone, physics or nets: below the policy's sure
#: 0.9, so that alone it only builds the policy's long run of likely-bad frames
ALONE = 0.85
#: a fault named by the frame's own physics alone needs this probability to be the state (its
#: tests are weak alone: below it they weigh in ``bad`` but name nothing)
NAMED_ALONE = 0.7
#: a reference this bad (the policy's sure) may have shown a tip bad from the start: its rescans
#: are not explained by it
SURE = 0.9

#: the raw measures of one frame the physical heads read (:func:`absolute_features`)
ABSOLUTE_FEATURES = (
    "echo_score",  # ln(1 + the echo's prominence, robust σ)
    "echo_periodic",  # the share of the echo its offset's double repeats
    "asymmetry",  # ln(valleys / peaks) of the sharpness test
    "peaks",  # ln of what the opening removes, over the relief
    "valleys",  # ln of what the closing fills, over the relief
    "sharp",  # 1 where the frame has features sharp enough to tell
    "texture",  # ln(1 + the largest change of line texture, robust σ)
    "jump",  # ln(1 + the largest jump of line height, robust σ)
)
#: the measures of a frame against its area's reference (:func:`relative_features`)
RELATIVE_FEATURES = (
    "change",  # ln(1 + the aligned difference, noise units)
    "tail",  # ln(1 + its 99.5th percentile, noise units)
    "lines_changed",  # the share of lines that changed
    "raised",  # ln of how much more the difference rose than fell
    "split",  # ln of how much more the lines after the split changed than those before
    "asymmetry_rise",  # the asymmetry's rise over the reference's
    "echo_gain",  # ln((1 + echo score) / (1 + the reference's))
)
#: logistic heads ``p = 1 / (1 + exp(-(a + w · x)))`` of each fault on the measures above, and
#: (``bad``) of any fault at all, fitted by ``bench/real_surfaces.py --fit --draws 6`` (see the
#: module)
HEADS: dict[str, tuple[float, tuple[float, ...]]] = {
    "double_tip": (0.217, (0.132, -2.673, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
    "blunt": (-1.151, (0.0, 0.0, 4.777, 0.0, 0.0, 0.0, 0.0, 0.0)),
    "tip_change": (-1.57, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.154, 0.719)),
    "bad": (-1.374, (-0.284, -1.752, 3.523, 0.0, 0.0, 0.0, 0.17, 0.94)),
}
RELATIVE_HEADS: dict[str, tuple[float, tuple[float, ...]]] = {
    "double_tip": (-1.475, (0.032, 0.512, 0.0, 4.469, 0.0, 0.0, -0.482)),
    "blunt": (-3.391, (1.272, 0.282, 0.0, 7.74, 0.0, 3.488, 0.0)),
    "tip_change": (-0.637, (0.0, 0.0, -1.934, -1.544, 2.69, 0.0, 0.0)),
    "bad": (-1.154, (-0.517, -0.346, 4.682, 6.754, 2.522, 3.831, -0.379)),
}


def logistic(head: tuple[float, tuple[float, ...]], x: np.ndarray) -> float:
    a, w = head
    t = a + float(np.dot(w, x))
    return 1.0 / (1.0 + math.exp(-t)) if t > -50 else 0.0


@dataclass(frozen=True)
class Evidence:
    """One source's say about one fault (``good`` where it speaks for the tip): its calibrated
    ``probability`` and its ``reason``. An uncertain source could not tell and carries no
    weight."""

    source: str
    fault: str
    probability: float
    reason: str
    certain: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "fault": self.fault,
            "probability": round(self.probability, 4),
            "reason": self.reason,
            "certain": self.certain,
        }


@dataclass(frozen=True)
class Physical:
    """What a frame's own heights say of its tip (see :func:`examine`)."""

    echo: Echo | None
    sharpness: Sharpness | None
    lines: TipChangeEvidence
    texture: TextureChange | None
    view: View
    first_row: int  #: the frame row of the view's first row
    rows: int  #: the frame's lines


def examine(frame: Frame, lines: TipChangeEvidence | None = None) -> Physical:
    """Every physical test of one frame (heights in metres, NaN for lines not scanned);
    ``lines``: its scan-line test where done elsewhere (the nets' decision carries it), else
    it is done here."""
    v = view(frame.data, frame.pixel_size_nm)
    scanned = int(np.isfinite(frame.data).all(axis=1).sum())
    first = max(0, (scanned - v.z.shape[0]) // 2)
    return Physical(
        echo(v),
        sharpness(v),
        lines if lines is not None else tip_change_evidence(frame.data),
        texture_change(frame.data),
        v,
        first,
        frame.shape[0],
    )


def absolute_features(p: Physical) -> np.ndarray:
    """The frame's raw measures, in :data:`ABSOLUTE_FEATURES` order (0 where a test could not
    read the frame)."""
    e, s, t = p.echo, p.sharpness, p.texture
    return np.array(
        [
            math.log1p(max(e.score, 0.0)) if e else 0.0,
            e.periodic if e else 1.0,
            s.asymmetry if s else 0.0,
            math.log(s.peaks + 1e-4) if s else 0.0,
            math.log(s.valleys + 1e-4) if s else 0.0,
            float(s.certain) if s else 0.0,
            math.log1p(t.sigma) if t else 0.0,
            math.log1p(p.lines.jump_sigma),
        ]
    )


def absolute(p: Physical) -> list[Evidence]:
    """The frame's own evidence: each fault's head, with the reason of the test behind it."""
    x = absolute_features(p)
    out = []
    if p.echo is not None:
        prob = logistic(HEADS["double_tip"], x)
        out.append(Evidence("echo", "double_tip", prob, p.echo.reason(), p.echo.features > 0.002))
    if p.sharpness is not None:
        s = p.sharpness
        prob = logistic(HEADS["blunt"], x) if s.certain else 0.0
        out.append(Evidence("sharpness", "blunt", prob, s.reason(), s.certain))
    if p.lines.row is not None:
        reason = f"the lines' height jumps at line {p.lines.row} ({p.lines.jump_sigma:.1f} σ)"
        out.append(Evidence("lines", "tip_change", p.lines.probability, reason))
    if p.texture is not None:
        prob = logistic(HEADS["tip_change"], x)
        out.append(Evidence("texture", "tip_change", prob, p.texture.reason()))
    if out:
        prob = logistic(HEADS["bad"], x)
        reason = "the frame's own physics, all tests together"
        out.append(Evidence("physics", "bad", prob, reason))
    return out


def seen(
    frame_id: str, p: Physical, faults: dict[str, float], operator: bool = False, bad: float = 0.0
) -> Seen:
    """What the memory keeps of a frame (``p``: its physics), its decision's fault
    probabilities and its ``bad``."""
    image = p.view.z.astype(np.float32)
    jump = p.lines.row if p.lines.probability >= 0.5 else None
    return Seen(
        frame_id, image, p.view.noise_m, p.sharpness, p.echo, faults, operator, p.first_row,
        bad, jump,
    )  # fmt: skip


def relative_features(p: Physical, cmp: Comparison) -> np.ndarray:
    """The frame's measures against its area's reference, in :data:`RELATIVE_FEATURES`
    order."""
    ref = cmp.reference
    rise = 0.0
    if p.sharpness is not None and ref.sharpness is not None:
        rise = p.sharpness.asymmetry - ref.sharpness.asymmetry
    now = p.echo.score if p.echo is not None else 0.0
    before = ref.echo.score if ref.echo is not None else 0.0
    return np.array(
        [
            math.log1p(cmp.change),
            math.log1p(cmp.tail),
            cmp.lines_changed,
            cmp.raised,
            math.log(max(cmp.split, 1.0)),
            rise,
            math.log((1.0 + max(now, 0.0)) / (1.0 + max(before, 0.0))),
        ]
    )


def relative(p: Physical, cmp: Comparison) -> list[Evidence]:
    """The frame against its area's reference: what changed, and since which line."""
    ref = cmp.reference
    who = "the operator's reference" if ref.operator else f"reference frame {ref.frame_id!r}"
    if not cmp.same_area:
        reason = f"unlike {who} of this area (correlation {cmp.correlation:.2f}): not compared"
        return [Evidence("memory", "none", 0.0, reason, certain=False)]
    if cmp.unchanged:
        return [Evidence("memory", "good", 0.0, f"as {who} (difference {cmp.change:.1f}× noise)")]
    x = relative_features(p, cmp)
    line = f"from line {cmp.row} on" if cmp.row is not None else "everywhere"
    reasons = {
        "tip_change": f"as {who} before line {cmp.row}, {cmp.split:.1f}× more different "
        "after it: the tip changed there",
        "blunt": f"protrusions rounder than in {who} (asymmetry {x[5]:+.2f})",
        "double_tip": f"an echo {math.exp(x[6]):.1f}× stronger than in {who}",
        "bad": f"{cmp.change:.1f}× the noise from {who} {line}, raised "
        f"{math.exp(cmp.raised):.1f}× more than lowered (a new tip's image lies over the old)",
    }
    return [
        Evidence("memory", f, logistic(head, x), reasons[f]) for f, head in RELATIVE_HEADS.items()
    ]


def explained_by(p: Physical, reference: Seen | None, cmp: Comparison | None) -> frozenset[str]:
    """The faults of frame ``p`` that its area's ``reference`` showed itself, and that the frame
    shows no differently: the surface's, not the tip's.

    * the very same frame again: all the reference showed;
    * a rescan no more different than noise (:attr:`~tipd.physics.memory.Comparison.unchanged`)
      of a reference that was not surely bad: all it showed. After a surely bad reference the
      tip may have been bad from the start, and its faults count again in every rescan;
    * a jump of the lines at the line (±2 %) where the reference's lines jumped: ``tip_change``.
    """
    if reference is None or cmp is None or not cmp.same_area:
        return frozenset()
    out: set[str] = set()
    if cmp.identical or (cmp.unchanged and reference.bad < SURE):
        out |= {f for f, q in reference.faults.items() if q >= CONTRADICTS}
    row, before = p.lines.row, reference.jump_row
    if row is not None and before is not None and abs(row - before) <= max(2, 0.02 * p.rows):
        out.add("tip_change")
    return frozenset(out)


def _strongest(evidence: list[Evidence], fault: str, sources: tuple[str, ...]) -> float | None:
    """The strongest certain probability of ``fault`` from ``sources`` (None: none said)."""
    said = [e.probability for e in evidence
            if e.certain and e.fault == fault and e.source in sources]  # fmt: skip
    return max(said) if said else None


def combine(
    nets: Decision,
    manifest: Manifest,
    evidence: list[Evidence],
    explained: frozenset[str] = frozenset(),
) -> Decision:
    """One decision from the nets' ``nets`` (of ``manifest``'s model) and the physical and
    memory ``evidence``; ``explained``: what the area's reference frame showed as strongly
    (the surface's).

    * The frame's own physics says what it finds (``bad``, ``tip_change``), but the policy
      hears no more than :data:`ALONE` of it (``policy_bad``, the state's confidence), below
      its sure 0.9: the tests are too weak on their own for a pulse, and alone they can only
      build the policy's long run of likely-bad frames.
    * Where the nets know the frame and call it good (more likely good than not), the frame's
      own physics says no more than the nets' not-good: on the frames they know the nets are
      the stronger judge. Only the memory may overrule them there.
    * The nets say what they find, but no more than :data:`CONTRADICTED_CAP` of a tip fault
      where a physical test that could tell found nothing (below :data:`CONTRADICTS`, and the
      memory did not find it either), nor of anything (their not-good included) where the
      frame shows what the area's reference showed: that is the surface.
    * Where the nets know the frame as corrupted, its lines' jumps are the corruption's: the
      physics' tip change is held below :data:`CONTRADICTED_CAP`.
    * The memory, a comparison across frames, says what it finds in full.
    * ``bad`` is the strongest of all that, and of 1 − the nets' good confidence under the
      same caps; with nothing able to tell, :data:`tipd.ensemble.UNSURE`.
    """
    own = ("echo", "sharpness", "lines", "texture", "physics")
    surface = bool(explained - {"tip_change"})  # the frame shows what the reference showed
    corrupted = (  # a frame the nets know as corrupted: its lines jump, whatever the tip does
        nets.familiar
        and "corruption" in manifest.classes
        and nets.classes["corruption"] >= manifest.thresholds["corruption"]
    )

    def physics(cap: float) -> tuple[dict[str, float], float | None]:
        """Each tip fault's strongest say, and the frame's own badness, the frame's own
        physics held at most ``cap``."""
        faults: dict[str, float] = {}
        for f in FAULTS:
            mine = _strongest(evidence, f, own)
            if mine is not None and f not in explained:
                faults[f] = min(
                    mine, cap if not (corrupted and f == "tip_change") else CONTRADICTED_CAP
                )
            remembered = _strongest(evidence, f, ("memory",))
            if remembered is not None:
                faults[f] = max(faults.get(f, 0.0), remembered)
        frame_bad = _strongest(evidence, "bad", ("physics",))
        frame_bad = None if frame_bad is None else (0.0 if surface else min(frame_bad, cap))
        return faults, frame_bad

    # a frame the nets know and call good: the frame's own tests, weaker than the nets on the
    # frames they know, say no more than the nets' not-good (only the memory may overrule them)
    nets_good = max((nets.classes[c] for c in manifest.desirable), default=0.0)
    own_cap = 1.0 - nets_good if nets.familiar and nets_good > 0.5 else 1.0
    said_in_full, frame_bad_in_full = physics(own_cap)  # what is reported
    faults, frame_bad = physics(min(ALONE, own_cap))  # what the policy may act on
    memory_bad = _strongest(evidence, "bad", ("memory",))
    classes = dict(nets.classes)
    capped: dict[str, float] = {}
    if nets.familiar:
        for c in manifest.classes:
            if c in manifest.desirable:
                continue
            backed = faults.get(c, 0.0)
            denied = _strongest(evidence, c, own) if c in FAULTS else None
            if surface or c in explained:
                capped[c] = CONTRADICTED_CAP  # the reference showed it: the surface
            elif denied is not None and denied < CONTRADICTS and backed < 0.5:
                capped[c] = CONTRADICTED_CAP
        for c, cap in capped.items():
            classes[c] = min(classes[c], cap)
        for c in manifest.classes:
            if c not in manifest.desirable:
                faults[c] = max(faults.get(c, 0.0), classes[c])
                said_in_full[c] = max(said_in_full.get(c, 0.0), classes[c])
    top_fault, top_p = max(faults.items(), key=lambda kv: kv[1], default=("unknown", 0.0))
    acting = [v for v in (frame_bad, memory_bad) if v is not None]
    reported = [v for v in (frame_bad_in_full, memory_bad) if v is not None]
    reported += list(said_in_full.values())
    if nets.familiar:
        good = nets_good
        nets_bad = 1.0 - good
        if surface:  # as the area's reference: what the nets see there is the surface
            nets_bad = min(nets_bad, CONTRADICTED_CAP)
        elif nets.state in capped:  # a tip fault the physics denies
            nets_bad = min(nets_bad, capped[nets.state])
        policy_bad = max([nets_bad, top_p, *acting])
        bad = max([nets_bad, *reported])
        state, confidence = nets.state, nets.confidence
        if state in capped:
            confidence = classes[state]
            if confidence < manifest.thresholds.get(state, 0.5):
                state, confidence = "unknown", 0.0
        if top_p >= 0.5 and top_p > good and top_fault != state:
            state, confidence = top_fault, top_p
    else:
        state, confidence = UNFAMILIAR, nets.confidence
        named = _strongest(evidence, top_fault, ("memory",)) is not None or top_p >= NAMED_ALONE
        if top_p >= 0.5 and named:
            state, confidence = top_fault, top_p
        policy_bad = max([top_p, *acting]) if acting or faults else UNSURE
        bad = max(reported) if reported else UNSURE
    tip_change = said_in_full.get("tip_change", 0.0)
    said = [
        Evidence(
            "nets", c, classes[c],
            f"the model's {c} {nets.classes[c]:.2f}"
            + (f" (at most {capped[c]:.2f}: the physics does not back it)" if c in capped else ""),
        )
        for c in manifest.classes
        if nets.familiar and (c == nets.state or c in capped)
    ]  # fmt: skip
    return replace(
        nets,
        classes=classes,
        state=state,
        desirable=state in manifest.desirable,
        bad=float(min(1.0, max(0.0, bad))),
        policy_bad=float(min(1.0, max(0.0, policy_bad))),
        tip_change=float(tip_change),
        confidence=float(min(1.0, max(0.0, confidence))),
        evidence=tuple(said + evidence),
    )
