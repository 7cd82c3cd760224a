"""What ``tipd train --init-from`` buys a lab with few labelled scans.

    .venv/bin/python bench/init_from.py [--surface cu111] [--start au111] [--n-lab 480]

Writes ``--n-lab`` synthetic frames of ``--surface`` as a lab's labelled scans would be
(``DIR/<class>/<n>.npy`` with a ``.json`` sidecar, one class a frame, equal numbers) and 1,200
more as held-out scans (another seed), then compares on the held-out ones: ``tipd train --data``
from scratch, the same ``--init-from`` the ``--start`` model, the ``--start`` model as it is,
and the shipped model of the surface itself (trained on 36,000 frames). Prints AUROC, balanced
accuracy, precision and good/bad AUROC of each ensemble. About 8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tipd.models import find, load_manifest
from tipd.synth import generate
from tipd.taxonomy import taxonomy
from tipd.train.evaluate import score


def write_scans(out: Path, surface: str, n: int, seed: int) -> None:
    """``n`` single-class frames of ``surface``, classes in turn, as ``out/<class>/<i>.npy``."""
    classes = taxonomy(surface).classes
    for i in range(n):
        f = generate(surface, i, seed=seed, pixels=128, mixed=0)
        folder = out / classes[f.primary]
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i}.npy", f.heights_m)
        (folder / f"{i}.json").write_text(json.dumps({"scan_size_nm": f.scan_size_nm[0]}))


def scores(model: str | Path, held: Path) -> dict[str, float]:
    """The ensemble row of Table I of ``model`` on the labelled folder ``held``."""
    row: dict[str, float] = score(str(model), held).metrics["table"]["Ensemble"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--surface", default="cu111")
    parser.add_argument("--start", default="au111", help="the model to go on from")
    parser.add_argument("--n-lab", type=int, default=480)
    parser.add_argument("--member-seconds", type=float, default=40.0)
    args = parser.parse_args()
    if taxonomy(args.surface).classes != tuple(load_manifest(find(args.start)).classes):
        sys.exit(f"{args.start} has other classes than {args.surface}")
    work = Path(tempfile.mkdtemp(prefix="init-from-"))
    lab, held = work / "lab", work / "held"
    write_scans(lab, args.surface, args.n_lab, seed=77)
    write_scans(held, args.surface, 1200, seed=99)
    train = [sys.executable, "-m", "tipd.cli", "train", "--surface", args.surface]
    train += ["--data", str(lab), "--member-seconds", str(args.member_seconds)]
    train += ["--reports", str(work / "reports")]
    runs = {
        "from scratch": [],
        f"--init-from {args.start}": ["--init-from", args.start],
    }
    rows: dict[str, dict[str, float]] = {}
    for name, extra in runs.items():
        out = work / name.replace(" ", "-").strip("-")
        subprocess.run([*train, "--out", str(out), *extra], check=True, capture_output=True)
        rows[f"tipd train --data ({name})"] = scores(out, held)
    rows[f"{args.start} as it is"] = scores(args.start, held)
    rows[f"{args.surface} as shipped"] = scores(args.surface, held)
    print(
        f"{args.surface}: {args.n_lab} labelled frames to train on, 1200 held out ({work})\n"
        f"{'model':<40} {'AUROC':>6} {'bal.acc':>8} {'prec':>6} {'good/bad':>9}"
    )
    for name, r in rows.items():
        print(
            f"{name:<40} {r['auroc']:>6.3f} {r['balanced_accuracy']:>8.3f} "
            f"{r['precision']:>6.3f} {r['good_bad_auroc']:>9.3f}"
        )


if __name__ == "__main__":
    main()
