"""Wall time to train each shipped model, as recorded in its manifest by ``tipd train``.

    .venv/bin/python bench/train.py             # read the figures of models/*
    .venv/bin/python bench/train.py --run au111 # retrain one surface now, then print

Target: each surface within 20 minutes on 2 CPU cores, all four within 80. A model trained
with ``--init-from`` (going on from another model's nets) shows this run's time, and the time
of the run it went on from beside it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tipd.models import load_manifest, models_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", nargs="*", default=[], help="surfaces to retrain first")
    args = parser.parse_args()
    for surface in args.run:
        subprocess.run(
            [sys.executable, "-m", "tipd.cli", "train", "--surface", surface], check=True
        )
    rows = []
    for folder in sorted(p for p in models_root().iterdir() if (p / "manifest.json").is_file()):
        m = load_manifest(folder, verify=False)
        t = m.training
        ens = m.metrics["table"]["Ensemble"]
        machine = f"{t.get('device', '?')} ({t.get('machine', '?')})"
        parent = (t.get("init_from") or {}).get("training")
        if parent:  # went on from another model's nets: say what made those
            machine += (
                f", going on from nets trained in {parent['seconds'] / 60:.1f} min on "
                f"{parent.get('device', '?')}"
            )
        rows.append(
            (
                m.name,
                t["seconds"],
                machine,
                t["n_train"],
                ens["auroc"],
                sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
            )
        )
    print(f"{'model':<8} {'train min':>9} {'frames':>7} {'ens AUROC':>9} {'MB':>6}  trained on")
    for name, seconds, machine, n, auc, size in rows:
        print(f"{name:<8} {seconds / 60:>9.1f} {n:>7} {auc:>9.3f} {size / 1e6:>6.2f}  {machine}")
    total = sum(r[1] for r in rows)
    print(
        f"{'all':<8} {total / 60:>9.1f}   the sum (scripts/train_all.sh runs the four at "
        f"once); models/ total {sum(r[5] for r in rows) / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
