"""What labelled real scans buy: the generic model fine-tuned (``tipd train --data DIR
--init-from generic``, its defaults) on N labelled real scans, scored on real scans from a
source it never saw.

    .venv/bin/python bench/finetune.py [--n 4 8 99] [--member-seconds 20]

Every labelled real scan in reach (``bench/real.py``'s: ``shared/real`` and the labelled
fixtures) is used, leave-one-source-out: for each source (a repository the scans came from),
the model is fine-tuned on N scans of the other sources (a seeded, class-stratified choice; N
above what is there means all of them) and scores that source's scans. Each scan is thus
scored by a model that saw nothing from its source; the scores of all folds are pooled into one
AUROC per N. N = 0 is the shipped generic model as it is. Scores are the model's own: ``bad``
is 1 minus its best good-class confidence, ``tip change`` its tip-change confidence (the
familiarity gate is left out, since it would call every real scan unfamiliar and answer 0.5).

Each class folder holds a scan as ``.npy`` + sidecar, its primary label: ``good``,
``tip_change`` (also where blunt), or ``corruption``. ``--member-seconds`` (default 20) is the
time per candidate net; ``tipd train``'s own default on 2 CPU cores is 250 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from real import SHARED, Scan, labelled_scans  # bench/real.py, beside this script

from tipd.ensemble import Ensemble
from tipd.models import find, load_manifest
from tipd.readers import read_any
from tipd.train.metrics import auroc


def primary(scan: Scan) -> str:
    """The generic class a scan is filed under."""
    if scan.tip_change or scan.tip:
        return "tip_change"
    return "corruption" if scan.bad else "good"


def choose(scans: list[Scan], n: int, seed: int) -> list[Scan]:
    """``n`` of ``scans`` (all when fewer), taken round-robin over the classes in a seeded
    order, so that every class present is in as soon as ``n`` allows."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Scan]] = defaultdict(list)
    for s in scans:
        by_class[primary(s)].append(s)
    pools = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_class.items())]
    out: list[Scan] = []
    while len(out) < min(n, len(scans)):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out


def write_folder(scans: list[Scan], folder: Path) -> None:
    """``folder/<class>/<name>.npy`` + sidecar for each scan (heights as read, metres)."""
    for s in scans:
        frame = read_any(s.path)
        target = folder / primary(s)
        target.mkdir(parents=True, exist_ok=True)
        np.save(target / f"{s.name}.npy", frame.data.astype(np.float32))
        (target / f"{s.name}.json").write_text(
            json.dumps({"scan_size_nm": list(frame.scan_size_nm)})
        )


def scores(model: Path, scans: list[Scan]) -> list[tuple[float, float]]:
    """(bad, tip change) per scan: the model's own confidences (see the module docstring)."""
    ens = Ensemble(model)
    desirable = ens.manifest.desirable
    out = []
    for s in scans:
        classes = ens.classify([read_any(s.path)])[0].classes
        out.append((1.0 - max(classes[d] for d in desirable), classes.get("tip_change", 0.0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[4, 8, 99], help="scans to train on")
    parser.add_argument("--member-seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-args",
        default="",
        help="more tipd train flags, e.g. '--epochs 300 --patience 100' (default: its own)",
    )
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    scans = labelled_scans(args.shared)
    sources = sorted({s.source for s in scans})
    generic = find("generic")
    pooled: dict[int, dict[str, tuple[Scan, float, float]]] = defaultdict(dict)
    for s, (bad, change) in zip(scans, scores(generic, scans), strict=True):
        pooled[0][s.name] = (s, bad, change)
    minutes: dict[int, float] = defaultdict(float)
    tmp = Path(tempfile.mkdtemp(prefix="tipd-finetune-"))
    for source in sources:
        held = [s for s in scans if s.source == source]
        others = [s for s in scans if s.source != source]
        for n in args.n:
            chosen = choose(others, n, args.seed)
            run = tmp / f"{source.replace('/', '_')}-{n}"
            write_folder(chosen, run / "data")
            t0 = time.monotonic()
            cmd = [
                sys.executable, "-m", "tipd.cli", "train", "--surface", "generic",
                "--data", str(run / "data"), "--init-from", str(generic),
                "--out", str(run / "model"), "--reports", str(run / "reports"),
                "--member-seconds", str(args.member_seconds), "--trees", "200",
                *args.train_args.split(),
            ]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            minutes[n] += (time.monotonic() - t0) / 60
            if done.returncode != 0:
                print(f"{source}, N={n}: tipd train failed: {done.stderr.strip()[-300:]}")
                continue
            for s, (bad, change) in zip(held, scores(run / "model", held), strict=True):
                pooled[n][s.name] = (s, bad, change)
            print(f"{source} held out ({len(held)} scans), trained on {len(chosen)}", flush=True)
    print()
    print("| N labelled scans | scans scored | good/bad AUROC | tip-change AUROC | training, min |")
    print("|---|---|---|---|---|")
    for n in [0, *args.n]:
        rows = list(pooled[n].values())
        if not rows:
            continue
        bad = auroc(np.array([s.bad for s, _, _ in rows]), np.array([b for _, b, _ in rows]))
        change = auroc(
            np.array([s.tip_change for s, _, _ in rows]), np.array([c for _, _, c in rows])
        )
        label = "0 (shipped generic)" if n == 0 else f"{n} (or all of the other sources')"
        print(f"| {label} | {len(rows)} | {bad:.2f} | {change:.2f} | {minutes[n]:.1f} |")
    print(f"\n{len(scans)} real scans from {len(sources)} sources; models in {tmp}")
    print(f"shipped generic: {load_manifest(generic, verify=False).name}")


if __name__ == "__main__":
    main()
