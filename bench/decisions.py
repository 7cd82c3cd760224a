"""What familiarity and the scan-line test change on the model's own held-out synthetic frames.

For ``--n`` frames of each model's test seed (rendered at the model size, as in its reports):
good/bad AUROC and tip-change AUROC from the vote alone (as ``reports/S.md``) and from the
whole decision (``bad`` and ``tip_change`` after familiarity and the scan lines), the share of
frames called unfamiliar, and how often the lines name a tip change on a frame the model does
not know.

    .venv/bin/python bench/decisions.py [--models generic au111 cu111 hsi100] [--n 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from tipd.ensemble import Ensemble
from tipd.frames import Frame
from tipd.models import find
from tipd.synth.generate import generate
from tipd.taxonomy import UNFAMILIAR, taxonomy
from tipd.train.metrics import auroc
from tipd.train.provenance import synth_seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["generic", "au111", "cu111", "hsi100"])
    ap.add_argument("--n", type=int, default=1000, help="held-out frames per model")
    args = ap.parse_args()
    print(
        "| model | good/bad AUROC: vote / decision | tip-change AUROC: vote / decision "
        "| unfamiliar | lines name the state |"
    )
    print("|---|---|---|---|---|")
    for name in args.models:
        ens = Ensemble(find(name), prefer_gpu=False)
        m = ens.manifest
        tax = taxonomy(m.surface)
        seed = synth_seeds(m).test
        size = m.preprocessing.size
        bad_y, tc_y, vote_bad, vote_tc, dec_bad, dec_tc = [], [], [], [], [], []
        unfamiliar = lines_named = 0
        for i in range(args.n):
            f = generate(m.surface, i, seed=seed, pixels=size)
            d = ens.classify([Frame(data=f.heights_m, scan_size_nm=f.scan_size_nm)])[0]
            truth = dict(zip(tax.labels, f.labels, strict=True))
            bad_y.append(not any(truth[c] for c in m.desirable))
            tc_y.append(bool(truth.get("tip_change", 0)))
            vote_bad.append(1 - max(d.classes[c] for c in m.desirable))
            vote_tc.append(d.classes.get("tip_change", 0.0))
            dec_bad.append(d.bad)
            dec_tc.append(d.tip_change)
            unfamiliar += d.state == UNFAMILIAR
            lines_named += not d.familiar and d.state == "tip_change"
        yb, yt = np.array(bad_y, float), np.array(tc_y, float)
        print(
            f"| {name} | {auroc(yb, np.array(vote_bad)):.3f} / {auroc(yb, np.array(dec_bad)):.3f}"
            f" | {auroc(yt, np.array(vote_tc)):.3f} / {auroc(yt, np.array(dec_tc)):.3f}"
            f" | {unfamiliar / args.n:.3f} | {lines_named / args.n:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
