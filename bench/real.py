"""The real-scan benchmark: every labelled real scan in reach, every shipped model.

For each model and each scan (``../shared/real/`` with its ``labels.csv``, and the real files of
``../shared/fixtures/`` labelled by eye in ``bench/real_fixtures.csv``):

* what ``tipd classify`` says (state, bad, tip change, familiarity, the lines' evidence, the
  strongest of the evidence behind it);
* good/bad AUROC (from ``bad``) and tip-change AUROC (from ``tip_change``) over the scans, and
  per class of fault the scans label (double tip, blunt, corruption) the AUROC of the model's
  confidence in it;
* the daemon-level figure: ``tipd run --advisory`` as a real subprocess, each scan streamed
  ``--repeat`` times as whole frames over ZeroMQ (one microscope id per scan), and from its
  journal how many good scans got a pulse or crash decided, and how many faulty tips did;
* how well familiarity separates these real frames from the model's own held-out synthetic
  frames (AUROC of 1 − familiarity), and what it costs there: the share of synthetic
  held-out frames called unfamiliar.

The familiarity statistics and the scan-line test are fitted on synthetic frames only; the
physical heads (:mod:`tipd.evidence`) are fitted on real surfaces re-imaged by simulated tips
(``bench/real_surfaces.py --fit``), which include the good rows of some of these scans, so the
figures here are not all out of sample: ``bench/real_surfaces.py`` gives the heads' figures
leaving each source out. Writes the tables to stdout and, with ``--out``, a markdown report.

    .venv/bin/python bench/real.py [--models generic au111] [--out reports/real-scans.md]
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from tipd.classify import judge, strongest
from tipd.ensemble import Decision, Ensemble
from tipd.frames import Frame
from tipd.models import find
from tipd.protocol import encode_frame
from tipd.readers import read_any
from tipd.taxonomy import UNFAMILIAR
from tipd.train.metrics import auroc

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
CONDITIONING = ("pulse", "crash")


@dataclass(frozen=True)
class Scan:
    """One labelled real scan: ``bad`` (any tip fault or corruption), ``tip_change``, ``tip``
    (a tip fault: tip change, double or blunt, not corruption), where it came from."""

    name: str
    path: Path
    bad: bool
    tip_change: bool
    tip: bool
    source: str
    #: per class of tip fault, where the labels say: True, False, or None (not labelled)
    faults: dict[str, bool | None]


def labelled_scans(shared: Path) -> list[Scan]:
    """The shared real scans and the labelled fixtures, in a fixed order."""
    out = []
    for folder, labels in ((shared / "real", shared / "real" / "labels.csv"),
                           (shared / "fixtures", HERE / "real_fixtures.csv")):  # fmt: skip
        with labels.open() as fh:
            for row in csv.DictReader(fh):
                tip_change = row["tip_change"] == "1"
                tip = (
                    row["tip"] == "1"
                    if "tip" in row
                    else (tip_change or row["double"] == "1" or row["blunt"] == "1")
                )
                source = row["source"].split("/tests/")[0].split("/test_data/")[0]
                path = folder / row["file"]
                bad = row["bad"] == "1"
                faults: dict[str, bool | None] = {
                    "tip_change": tip_change,
                    "corruption": row["corrupt"] == "1" if "corrupt" in row else bad and not tip,
                    # a fixture marked as no tip fault has neither; one with a fault says not which
                    **{
                        c: row[k] == "1" if k in row else (None if tip else False)
                        for c, k in (("double_tip", "double"), ("blunt", "blunt"))
                    },
                }
                out.append(Scan(row["id"], path, bad, tip_change, tip, source, faults))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stream(model: str, seqs: dict[str, list[Frame]]) -> dict[str, list[str]]:
    """Run ``tipd run --advisory --model MODEL`` (no archive, every microscope id admitted),
    publish each microscope's frames in turn, one frame of each sequence per round, waiting for
    each decision, and return per microscope the actions it decided."""
    ports = {k: free_port() for k in ("frames", "control", "events", "operator", "preview")}
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "journal.sqlite"
        env = {
            **os.environ,
            "TIPD_ARCHIVE__ENABLED": "false",
            "TIPD_MICROSCOPES": "[]",
            "TIPD_MAX_MICROSCOPES": str(len(seqs) + 1),
            **{f"TIPD_ENDPOINTS__{k.upper()}": f"tcp://127.0.0.1:{p}" for k, p in ports.items()},
        }
        cmd = [
            sys.executable, "-m", "tipd.cli", "run", "--advisory", "--model", model,
            "--journal", str(journal),
        ]  # fmt: skip
        daemon = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 1000)
        pub.connect(f"tcp://127.0.0.1:{ports['frames']}")
        try:
            _wait_for(lambda: journal.exists(), 60, daemon)
            time.sleep(0.5)  # the subscription reaches the publisher
            sent = 0
            for i in range(max(len(frames) for frames in seqs.values())):
                for mic, frames in seqs.items():
                    if i < len(frames):
                        f = frames[i].replace(microscope=mic, frame_id=f"{mic}-{i}", seq=i)
                        pub.send_multipart(encode_frame(f.header(), f.data))
                        sent += 1
                        _wait_for(lambda n=sent: _decided(journal) >= n, 60, daemon)
            time.sleep(0.5)
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
            rows = db.execute("SELECT microscope, action FROM commands").fetchall()
            db.close()
        finally:
            pub.close()
            daemon.terminate()
            daemon.wait(20)
    actions: dict[str, list[str]] = {mic: [] for mic in seqs}
    for mic, action in rows:
        actions.setdefault(mic, []).append(action)
    return actions


def _decided(journal: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        n: int = db.execute("SELECT COUNT(*) FROM frames WHERE kind = 'frame'").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


def _wait_for(ready: object, timeout: float, daemon: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if daemon.poll() is not None:
            err = daemon.stderr.read().decode() if daemon.stderr else ""
            raise RuntimeError(f"tipd run exited {daemon.returncode}: {err[-2000:]}")
        if time.monotonic() > end:
            raise TimeoutError("no decision from tipd run")
        time.sleep(0.05)


def synthetic_familiarity(ens: Ensemble, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Familiarity of ``n`` held-out synthetic frames (the model's test seed, as the generator
    version it was last fitted on drew them), and the part of it from the hidden features alone."""
    from tipd.train.data import synthetic
    from tipd.train.familiar import features
    from tipd.train.provenance import frames_version, synth_seeds

    m = ens.manifest
    size, channels = m.preprocessing.size, tuple(m.preprocessing.channels)
    test = synthetic(m.surface, n, synth_seeds(m).test, size, 2, channels, frames_version(m))
    assert ens.familiarity is not None and test.pixel_nm is not None
    f = features(ens, test.x)
    return ens.familiarity.score(f, list(test.pixel_nm)), ens.familiarity.feature_familiarity(f)


def feature_only(ens: Ensemble, frames: list[Frame]) -> np.ndarray:
    """The hidden-feature familiarity of real ``frames`` (their scale not used)."""
    from tipd.train.familiar import features

    assert ens.familiarity is not None
    x = np.concatenate([ens.prepare(f.data) for f in frames])
    return ens.familiarity.feature_familiarity(features(ens, x))


def _label(s: Scan) -> str:
    if s.tip_change:
        return "tip change"
    if s.tip:
        return "tip fault"
    return "corrupt" if s.bad else "good"


def _auroc(y: list[bool], score: list[float]) -> str:
    if len(set(y)) < 2:
        return "n/a"
    return f"{auroc(np.array(y, dtype=float), np.array(score)):.2f}"


def bench_model(model: str, scans: list[Scan], repeat: int, n_synth: int) -> list[str]:
    """Markdown lines of one model's figures."""
    ens = Ensemble(find(model), prefer_gpu=False)
    frames = []
    decisions: list[Decision] = []
    for s in scans:
        frame = read_any(s.path).replace(microscope=s.name.replace("_", "-"), surface=None)
        frames.append(frame)
        decisions.append(judge(frame, ens))
    actions = stream(model, {f.microscope: [f] * repeat for f in frames})
    lines = [f"## {model}", ""]
    lines += [
        "| scan | label | state | bad | tip change | familiarity | lines (p, row) "
        f"| strongest evidence | decided in {repeat} frames |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, f, d in zip(scans, frames, decisions, strict=True):
        label = _label(s)
        fam = "n/a" if d.familiarity is None else f"{d.familiarity:.3f}"
        row = "" if d.lines.row is None else f"{d.lines.probability:.2f}, {d.lines.row}"
        done = actions[f.microscope]
        acts = ", ".join(f"{a} ×{done.count(a)}" for a in sorted(set(done)))
        lines.append(
            f"| {s.name} | {label} | {d.state} | {d.bad:.2f} | {d.tip_change:.2f} | {fam} "
            f"| {row} | {strongest(d)} | {acts or 'nothing'} |"
        )
    good = [s for s in scans if not s.bad]
    faulty = [s for s in scans if s.tip]
    cond = {f.microscope: any(a in CONDITIONING for a in actions[f.microscope]) for f in frames}
    by_name = {s.name: f.microscope for s, f in zip(scans, frames, strict=True)}
    good_hit = sum(cond[by_name[s.name]] for s in good)
    fault_hit = sum(cond[by_name[s.name]] for s in faulty)
    unfamiliar = sum(d.state == UNFAMILIAR or not d.familiar for d in decisions)
    good_bad = _auroc([s.bad for s in scans], [d.bad for d in decisions])
    tip_change = _auroc([s.tip_change for s in scans], [d.tip_change for d in decisions])
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| good/bad AUROC (`bad`) | {good_bad} |",
        f"| tip-change AUROC (`tip_change`) | {tip_change} |",
        f"| good scans with a pulse or crash decided | {good_hit} of {len(good)} |",
        f"| faulty tips with a pulse or crash decided | {fault_hit} of {len(faulty)} |",
        f"| real scans unfamiliar to the model | {unfamiliar} of {len(scans)} |",
    ]
    for c in ens.manifest.classes:
        known = [(s.faults[c], d.classes[c]) for s, d in zip(scans, decisions, strict=True)
                 if s.faults.get(c) is not None]  # fmt: skip
        if known:
            y = [bool(k) for k, _ in known]
            lines.append(
                f"| {c}: AUROC of its confidence ({sum(y)} of {len(y)} labelled scans) "
                f"| {_auroc(y, [p for _, p in known])} |"
            )
    if ens.familiarity is not None and n_synth:
        synth, synth_features = synthetic_familiarity(ens, n_synth)
        real = np.array([d.familiarity for d in decisions], dtype=float)
        y = np.r_[np.ones(len(real)), np.zeros(len(synth))]
        sep = auroc(y, 1 - np.r_[real, synth])
        cost = float(np.mean(synth < ens.familiarity.threshold))
        lines += [
            f"| familiarity: real vs held-out synthetic AUROC | {sep:.2f} |",
            f"| ... from the hidden features alone (scale not used) | "
            f"{auroc(y, 1 - np.r_[feature_only(ens, frames), synth_features]):.2f} |",
            f"| familiarity: held-out synthetic frames unfamiliar (cost) | {cost:.3f} "
            f"of {n_synth} |",
        ]
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models", nargs="+", default=["generic", "au111", "cu111", "hsi100"],
        help="shipped models (default: all four)",
    )  # fmt: skip
    ap.add_argument("--repeat", type=int, default=4, help="frames streamed per scan (default 4)")
    ap.add_argument(
        "--synthetic", type=int, default=1000,
        help="held-out synthetic frames for the familiarity figures (0: skip)",
    )  # fmt: skip
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    ap.add_argument("--out", type=Path, help="also write the report here (markdown)")
    args = ap.parse_args()
    scans = labelled_scans(args.shared)
    lines = [
        "# Real scans: what each shipped model says",
        "",
        f"Measured on real scans only: {len(scans)} labelled scans from other labs "
        "(`shared/real/`, and the real fixtures labelled in `bench/real_fixtures.csv`), "
        f"each streamed {args.repeat} times to `tipd run --advisory`. The familiarity "
        "figures compare them with each model's held-out synthetic frames. Nothing was "
        "fitted on these scans. Reproduce: `.venv/bin/python bench/real.py --out "
        "reports/real-scans.md`.",
        "",
    ]
    for model in args.models:
        lines += bench_model(model, scans, args.repeat, args.synthetic)
        print("\n".join(lines[-20:]), flush=True)
    if args.out:
        args.out.write_text("\n".join(lines))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
