"""Real surfaces, known tips: every good real scan in reach imaged again by simulated tips.

    .venv/bin/python bench/real_surfaces.py [--draws 6] [--noise both] [--stream] [--out F]

The surfaces: the good scans of ``../shared/real`` and ``../shared/fixtures`` (their labels),
and the good rows of scans whose tip changed later (``bench/real_good_rows.csv``, judged by
eye), each whole and in up to three square crops (other fields of view of the same surface).
Each is imaged again (:mod:`tipd.synth.retip`, geometric tip convolution) through ``--draws``
double tips, blunt tips and tip changes (to a double or blunt tip at a random line, half of
them with a jump in tip length), drawn relative to the scan's pixel and height range. ``noisy``
adds the scan's own white noise back after the new tip (a tip does not take the noise of the
feedback away); ``plain`` does not.

Figures, each over every source (the lab a scan came from):

* single frames, as ``tipd classify`` decides them (:func:`tipd.classify.judge`): the AUROC of
  ``bad`` for double vs good, blunt vs good, change vs good, and of ``tip_change`` for the
  changes against everything else;
* with ``--stream``, the daemon: ``tipd run --advisory`` as a subprocess, fed whole frames as a
  lab rescans one area four times: each good scan four times (good tips harmed: a pulse or a
  crash decided), a good frame then a double or blunt tip's frame three times, or a good frame,
  the change, then the new tip twice (faulty tips conditioned);
* with ``--features``, each physical detector's raw score per frame (for fitting its
  calibration, leave-one-source-out).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers import read_any
from tipd.synth import retip

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
KINDS = ("good", "double", "blunt", "change")


@dataclass(frozen=True)
class Surface:
    """A good real scan (or its good rows): ``name``, the ``source`` it came from."""

    name: str
    source: str
    frame: Frame


def good_surfaces(shared: Path, crops: int = 3, crop_px: int = 128) -> list[Surface]:
    """Every good real scan in reach, whole and in up to ``crops`` squares of ``crop_px`` along
    its diagonal (where the scan is that tall and twice that long)."""
    wanted: list[tuple[str, Path, str, tuple[int, int] | None]] = []
    for folder, labels in ((shared / "real", shared / "real" / "labels.csv"),
                           (shared / "fixtures", HERE / "real_fixtures.csv")):  # fmt: skip
        with labels.open() as fh:
            for row in csv.DictReader(fh):
                source = row["source"].split("/tests/")[0].split("/test_data/")[0]
                if row["bad"] == "0":
                    wanted.append((row["id"], folder / row["file"], source, None))
    with (HERE / "real_good_rows.csv").open() as fh:
        rows = {r["id"]: (int(r["first_row"]), int(r["last_row"])) for r in csv.DictReader(fh)}
    with (shared / "real" / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["id"] in rows:
                source = row["source"].split("/tests/")[0]
                wanted.append((row["id"], shared / "real" / row["file"], source, rows[row["id"]]))
    out = []
    for name, path, source, band in wanted:
        frame = read_any(path)
        z = np.asarray(frame.data, dtype=np.float64)
        if band is not None:
            z = z[band[0] : band[1]]
            h = frame.scan_size_nm[1] * z.shape[0] / frame.data.shape[0]
            frame = frame.replace(scan_size_nm=(frame.scan_size_nm[0], h))
        frame = frame.replace(data=z, microscope="stm1", surface=None)
        out.append(Surface(name, source, frame))
        rows_, cols = z.shape
        if min(rows_, cols) >= crop_px and max(rows_, cols) >= 2 * crop_px:
            for k in range(crops):
                r0 = (rows_ - crop_px) * (k + 1) // (crops + 1)
                c0 = (cols - crop_px) * (k + 1) // (crops + 1)
                part = z[r0 : r0 + crop_px, c0 : c0 + crop_px]
                px = frame.pixel_size_nm
                sub = frame.replace(data=part, scan_size_nm=(crop_px * px[0], crop_px * px[1]))
                out.append(Surface(f"{name}/{k}", source, sub))
    return out


@dataclass(frozen=True)
class Known:
    """A real surface imaged by a known tip: ``kind`` (good, double, blunt, change), the new
    tip's own image of the whole frame (``after``: for a change, the tip after it), and the
    change's row."""

    surface: Surface
    kind: str
    frame: Frame
    after: Frame
    row: int | None = None


def known_tips(surfaces: list[Surface], draws: int, noisy: bool, seed: int = 0) -> list[Known]:
    """Each surface as it is, and through ``draws`` double, blunt and changing tips."""
    rng = np.random.default_rng(seed)
    out = []
    for s in surfaces:
        z = np.asarray(s.frame.data, dtype=np.float64)
        z = np.where(np.isfinite(z), z, np.nanmedian(z))
        px = s.frame.pixel_size_nm
        sigma = retip.pixel_noise_m(z) if noisy else 0.0

        def noise(im: np.ndarray, sigma: float = sigma) -> np.ndarray:
            return retip.with_noise(rng, im, sigma) if sigma else im

        out.append(Known(s, "good", s.frame, s.frame))
        for _ in range(draws):
            for kind, draw in (("double", retip.draw_double), ("blunt", retip.draw_blunt)):
                im = noise(retip.image_through(z, px, draw(rng, z, px)))
                f = s.frame.replace(data=im)
                out.append(Known(s, kind, f, f))
            ch = retip.draw_change(rng, z, px)
            changed = noise(retip.image_with_change(z, px, ch.before, ch.after, ch.row, ch.jump_nm))
            after = noise(retip.image_through(z, px, ch.after) + ch.jump_nm * 1e-9)
            out.append(
                Known(
                    s, "change", s.frame.replace(data=changed), s.frame.replace(data=after), ch.row
                )
            )
    return out


def auroc_or_na(y: list[bool], score: list[float], digits: int = 2) -> str:
    from tipd.train.metrics import auroc

    if len(set(y)) < 2:
        return "n/a"
    return f"{auroc(np.array(y, dtype=float), np.array(score)):.{digits}f}"


def single_frames(known: list[Known], model: str) -> dict[str, str]:
    """The single-frame figures of ``tipd classify``'s decision on every frame."""
    from tipd.classify import judge
    from tipd.ensemble import Ensemble
    from tipd.models import find

    ens = Ensemble(find(model), prefer_gpu=False)
    decided = [(k, judge(k.frame, ens)) for k in known]
    out = {}
    for kind in ("double", "blunt", "change"):
        pairs = [(k.kind == kind, d.bad) for k, d in decided if k.kind in ("good", kind)]
        out[f"good/bad AUROC, {kind} vs good"] = auroc_or_na(*zip(*pairs, strict=True))  # type: ignore[arg-type]
    pairs = [(k.kind == "change", d.tip_change) for k, d in decided]
    out["tip-change AUROC, change vs the rest"] = auroc_or_na(*zip(*pairs, strict=True))  # type: ignore[arg-type]
    return out


def raw_features(frame: Frame) -> dict[str, float]:
    """Every physical detector's raw numbers on one frame."""
    from tipd.physics.echo import echo
    from tipd.physics.linechange import texture_change
    from tipd.physics.sharpness import sharpness
    from tipd.physics.view import view
    from tipd.scanlines import tip_change_evidence

    v = view(frame.data, frame.pixel_size_nm)
    e, s = echo(v), sharpness(v)
    t = texture_change(frame.data)
    lines = tip_change_evidence(frame.data)
    return {
        "echo_score": e.score if e else 0.0,
        "echo_strength": e.strength if e else 0.0,
        "echo_periodic": e.periodic if e else 1.0,
        "asymmetry": s.asymmetry if s else 0.0,
        "peaks": s.peaks if s else 0.0,
        "valleys": s.valleys if s else 0.0,
        "sharp_certain": float(s.certain) if s else 0.0,
        "texture_sigma": t.sigma if t else 0.0,
        "texture_log_ratio": math.log(t.ratio) if t else 0.0,
        "jump_sigma": lines.jump_sigma,
    }


def feature_table(known: list[Known]) -> list[str]:
    """Per raw feature and fault: the AUROC of fault against good (either direction)."""
    from tipd.train.metrics import auroc

    rows = [(k.kind, raw_features(k.frame)) for k in known]
    names = list(rows[0][1])
    out = ["| feature | double | blunt | change |", "|---|---|---|---|"]
    for n in names:
        cells = []
        for kind in ("double", "blunt", "change"):
            sel = [(kd == kind, f[n]) for kd, f in rows if kd in ("good", kind)]
            y = np.array([a for a, _ in sel], dtype=float)
            a = auroc(y, np.array([b for _, b in sel]))
            cells.append(f"{max(a, 1 - a):.2f}{'+' if a >= 0.5 else '−'}")
        out.append(f"| {n} | {' | '.join(cells)} |")
    return out


def rescan(rng: np.random.Generator, frame: Frame) -> Frame:
    """``frame`` scanned again by the same tip: fresh noise and a drift of up to 2 pixels."""
    z = np.asarray(frame.data, dtype=np.float64)
    dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
    moved = np.roll(z, (dy, dx), axis=(0, 1))
    return frame.replace(data=retip.with_noise(rng, moved, retip.pixel_noise_m(z)))


def measured(known: list[Known], seed: int = 1) -> list[tuple[Known, np.ndarray, np.ndarray]]:
    """Each frame's absolute measures and its measures against its good original (a good
    frame against a rescan of itself)."""
    from tipd.evidence import absolute_features, examine, relative_features, seen
    from tipd.physics.memory import compare

    rng = np.random.default_rng(seed)
    originals = {k.surface.name: examine(k.frame) for k in known if k.kind == "good"}
    out = []
    for k in known:
        frame = rescan(rng, k.frame) if k.kind == "good" else k.frame
        p = examine(frame)
        ref = seen("ref", originals[k.surface.name], {})
        cmp = compare(seen("now", p, {}), ref)
        out.append((k, absolute_features(p), relative_features(p, cmp)))
    return out


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, tuple[float, ...]]:
    """An L2-regularised logistic regression of ``y`` on ``x``, its standardisation folded
    into the weights: ``(a, w)`` with ``p = 1 / (1 + exp(-(a + w · x)))``."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(axis=0), x.std(axis=0)
    used = sd > 0
    model = LogisticRegression(C=0.3, max_iter=1000, class_weight="balanced")
    model.fit((x[:, used] - mu[used]) / sd[used], y)
    w = np.zeros(x.shape[1])
    w[used] = model.coef_[0] / sd[used]
    a = float(model.intercept_[0] - np.dot(w, mu))
    return round(a, 3), tuple(round(float(v), 3) for v in w)


#: which frames each head is fitted to tell apart: the fault's against these
AGAINST = {"double_tip": ("good",), "blunt": ("good",), "tip_change": ("good", "double", "blunt")}
#: the measures each head reads (the rest weigh 0): the ones whose physics speaks of its fault
READS = {
    1: {
        "double_tip": ("echo_score", "echo_periodic"),
        "blunt": ("asymmetry",),
        "tip_change": ("texture", "jump"),
    },
    2: {
        "double_tip": ("change", "tail", "raised", "echo_gain"),
        "blunt": ("change", "tail", "raised", "asymmetry_rise"),
        "tip_change": ("lines_changed", "raised", "split"),
    },
}
KIND = {"double_tip": "double", "blunt": "blunt", "tip_change": "change"}
#: what the frame's badness heads read (the measures that tell any fault from a good frame)
BAD_READS = {
    1: ("echo_score", "echo_periodic", "asymmetry", "texture", "jump"),
    2: ("change", "tail", "lines_changed", "raised", "split", "asymmetry_rise", "echo_gain"),
}


def fit_heads(rows: list[tuple[Known, np.ndarray, np.ndarray]], which: int) -> tuple[
    dict[str, tuple[float, tuple[float, ...]]], list[str]
]:  # fmt: skip
    """Heads on the absolute (``which`` 1) or relative (2) measures, fitted on every source,
    and the leave-one-source-out figures of their probabilities."""
    from tipd.evidence import ABSOLUTE_FEATURES, RELATIVE_FEATURES, logistic

    names = ABSOLUTE_FEATURES if which == 1 else RELATIVE_FEATURES
    sources = sorted({k.surface.source for k, _, _ in rows})
    heads = {}
    loso: dict[str, np.ndarray] = {}
    for fault, against in AGAINST.items():
        use = [r for r in rows if r[0].kind in (KIND[fault], *against)]
        mask = np.array([n in READS[which][fault] for n in names], dtype=float)
        x = np.array([r[which] * mask for r in use])
        y = np.array([r[0].kind == KIND[fault] for r in use], dtype=float)
        heads[fault] = _fit(x, y)
        pred = np.zeros(len(rows))
        for src in sources:
            train = [i for i, r in enumerate(use) if r[0].surface.source != src]
            head = _fit(x[train], y[train])
            for i, r in enumerate(rows):
                if r[0].surface.source == src:
                    pred[i] = logistic(head, r[which] * mask)
        loso[fault] = pred
    kinds = [r[0].kind for r in rows]
    bad = np.max(np.stack(list(loso.values())), axis=0)
    if True:  # one head for the frame's badness, on the measures that carry any
        mask = np.array([n in BAD_READS[which] for n in names], dtype=float)
        x = np.array([r[which] * mask for r in rows])
        y = np.array([k != "good" for k in kinds], dtype=float)
        heads["bad"] = _fit(x, y)
        for src in sources:
            train = [i for i, r in enumerate(rows) if r[0].surface.source != src]
            head = _fit(x[train], y[train])
            for i, r in enumerate(rows):
                if r[0].surface.source == src:
                    bad[i] = logistic(head, x[i])
    lines = ["| figure (leave one source out) | value |", "|---|---|"]
    faulty = [float(bad[i]) for i, k in enumerate(kinds) if k != "good"]
    fine = [float(bad[i]) for i, k in enumerate(kinds) if k == "good"]
    lines.append(
        f"| bad head: faulty frames at p ≥ 0.9 | {sum(p >= 0.9 for p in faulty)} of {len(faulty)} |"
    )
    lines.append(
        f"| bad head: good frames at p ≥ 0.9 | {sum(p >= 0.9 for p in fine)} of {len(fine)} |"
    )
    for kind in ("double", "blunt", "change"):
        sel = [i for i, k in enumerate(kinds) if k in ("good", kind)]
        score = auroc_or_na([kinds[i] == kind for i in sel], [float(bad[i]) for i in sel])
        lines.append(f"| good/bad AUROC, {kind} vs good | {score} |")
    change = auroc_or_na([k == "change" for k in kinds], [float(v) for v in loso["tip_change"]])
    lines.append(f"| tip-change AUROC, change vs the rest | {change} |")
    for fault, pred in loso.items():
        sel = [i for i, k in enumerate(kinds) if k in ("good", KIND[fault])]
        alone = auroc_or_na([kinds[i] == KIND[fault] for i in sel], [float(pred[i]) for i in sel])
        lines.append(f"| {fault} head alone: {KIND[fault]} vs good | {alone} |")
        hit = [float(pred[i]) for i, k in enumerate(kinds) if k == KIND[fault]]
        sure = sum(p >= 0.9 for p in hit)
        lines.append(f"| {fault}: {KIND[fault]} frames at p ≥ 0.9 | {sure} of {len(hit)} |")
        good = [float(pred[i]) for i, k in enumerate(kinds) if k == "good"]
        lines.append(
            f"| {fault}: good frames at p ≥ 0.9 | {sum(p >= 0.9 for p in good)} of {len(good)} |"
        )
    return heads, lines


def sequences(known: list[Known], repeat: int = 4) -> dict[str, tuple[str, list[Frame]]]:
    """What a lab rescanning one area ``repeat`` times would send, per microscope id: each
    good surface ``repeat`` times as it is; a good frame then a double or blunt tip's frame
    (``repeat`` − 1 times); a good frame, the change, then the new tip (``repeat`` − 2 times)."""
    out: dict[str, tuple[str, list[Frame]]] = {}
    for n, k in enumerate(known):
        good = k.surface.frame
        if k.kind == "good":
            frames = [good] * repeat
        elif k.kind == "change":
            frames = [good, k.frame, *[k.after] * (repeat - 2)]
        else:
            frames = [good, *[k.frame] * (repeat - 1)]
        mic = f"s{n}"
        out[mic] = (k.kind, [f.replace(microscope=mic, surface=None) for f in frames])
    return out


def streamed(known: list[Known], model: str) -> dict[str, str]:
    """The daemon's figures over every sequence (see :func:`sequences`)."""
    from real import stream

    seqs = sequences(known)
    actions = stream(model, {mic: frames for mic, (_, frames) in seqs.items()})
    harmed = {kind: 0 for kind in KINDS}
    total = {kind: 0 for kind in KINDS}
    for mic, (kind, _) in seqs.items():
        total[kind] += 1
        harmed[kind] += any(a in ("pulse", "crash") for a in actions[mic])
    faulty = sum(harmed[k] for k in ("double", "blunt", "change"))
    n_faulty = sum(total[k] for k in ("double", "blunt", "change"))
    good = f"{harmed['good']} of {total['good']}"
    out = {"good tips with a pulse or crash decided, each sent 4 times": good}
    for kind in ("double", "blunt", "change"):
        out[f"{kind}: faulty tips conditioned"] = f"{harmed[kind]} of {total[kind]}"
    out["faulty tips conditioned"] = (
        f"{faulty} of {n_faulty} ({100 * faulty / max(n_faulty, 1):.0f} %)"
    )
    return out


def synthetic_check(model: str, n: int) -> str:
    """The good/bad AUROC of held-out synthetic frames of ``model``'s surface (its test seed):
    the nets' own decision against the whole decision step's, which weighs the physics too."""
    from tipd.classify import judge
    from tipd.ensemble import Ensemble
    from tipd.models import find
    from tipd.synth import generate
    from tipd.train.provenance import synth_seeds

    ens = Ensemble(find(model), prefer_gpu=False)
    seed = synth_seeds(ens.manifest).test
    good = set(ens.manifest.desirable)
    truth, alone, weighed = [], [], []
    for i in range(n):
        lab = generate(ens.manifest.surface, i, seed=seed, pixels=ens.manifest.preprocessing.size)
        frame = Frame(lab.heights_m, lab.scan_size_nm)
        truth.append(not (set(lab.label_names) & good))
        alone.append(ens.classify([frame])[0].bad)
        weighed.append(judge(frame, ens).bad)
    return (
        f"| {model}: held-out synthetic good/bad AUROC, nets alone → whole decision "
        f"({n} frames) | {auroc_or_na(truth, alone, 3)} → {auroc_or_na(truth, weighed, 3)} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=6, help="tips of each kind per surface")
    ap.add_argument("--noise", choices=("plain", "noisy", "both"), default="both")
    ap.add_argument("--model", default="generic")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    ap.add_argument("--features", action="store_true", help="each raw detector's AUROC")
    ap.add_argument("--fit", action="store_true", help="fit the physical heads (both noises)")
    ap.add_argument("--stream", action="store_true", help="also the daemon's streamed figures")
    ap.add_argument(
        "--synthetic", type=int, default=0, metavar="N",
        help="also N held-out synthetic frames of each paper surface (a regression check)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.fit:
        surfaces = good_surfaces(args.shared)
        rows = []
        for seed, noisy in enumerate((False, True)):
            rows += measured(known_tips(surfaces, args.draws, noisy, seed), seed)
        for which, name in ((1, "HEADS"), (2, "RELATIVE_HEADS")):
            heads, lines = fit_heads(rows, which)
            print("\n".join(lines))
            print(f"{name} = {{")
            for fault, head in heads.items():
                print(f"    {fault!r}: {head},")
            print("}")
        return
    surfaces = good_surfaces(args.shared)
    sources = sorted({s.source for s in surfaces})
    print(f"{len(surfaces)} good real surfaces from {len(sources)} sources", file=sys.stderr)
    lines = []
    for noisy in {"plain": [False], "noisy": [True], "both": [False, True]}[args.noise]:
        known = known_tips(surfaces, args.draws, noisy)
        if args.features:
            print("\n".join(feature_table(known)), flush=True)
            continue
        figures = single_frames(known, args.model)
        if args.stream:
            figures.update(streamed(known, args.model))
        label = "noise added back" if noisy else "tip convolution only"
        lines += [f"### {label}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in figures.items()]
        lines.append("")
        print("\n".join(lines[-len(figures) - 5 :]), flush=True)
    if args.synthetic:
        lines += ["### Held-out synthetic frames", "", "| figure | value |", "|---|---|"]
        lines += [synthetic_check(m, args.synthetic) for m in ("au111", "cu111", "hsi100")]
        print("\n".join(lines[-3:]), flush=True)
    if args.out:
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
