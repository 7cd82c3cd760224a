"""The generic model on real scans from other labs (../shared/fixtures), surfaces it never saw.

.venv/bin/python scripts/real_scans_report.py [FIXTURES] > reports/generic-real-scans.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from tipd.ensemble import Ensemble
from tipd.models import find
from tipd.readers import read_any

#: what each file shows, from the fixtures' README (written by people who looked at them)
SEEN = {
    "FeSe_topography.sxm": ("atomic lattice with streaks and bright impurities", "good"),
    "pyspm_test.sxm": ("5×5 µm granular film, no atomic features", "—"),
    "20201111--4_1.Z_mtrx": ("steps, small tip change about a third of the way up", "tip_change"),
    "test_single_image.gwy": ("blocky, laterally offset bands (a corrupted scan)", "corruption"),
    "topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4": ("ABC graphite at 9 K", "—"),
}


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/fixtures")
    ens = Ensemble(find("generic"))
    print("# The generic model on real scans it never saw\n")
    print(
        f"Model `generic` ({ens.provider}); files from `{folder}` (see its README). "
        "'Expected' is what the README's description implies, where it implies one state.\n"
    )
    print("| file | what it shows | expected | state | top confidences | bad | tip change |")
    print("|---|---|---|---|---|---|---|")
    for name, (shows, expected) in SEEN.items():
        d = ens.classify([read_any(folder / name)])[0]
        top = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(d.classes.items(), key=lambda kv: -kv[1])[:3]
        )
        print(
            f"| {name[:28]} | {shows} | {expected} | {d.state} | {top} | {d.bad:.2f} | "
            f"{d.tip_change:.2f} |"
        )


if __name__ == "__main__":
    main()
