"""The README's table of shipped models, from their manifests."""

from __future__ import annotations

from tipd.models import load_manifest, models_root

PAPER = {"hsi100": (0.95, 0.78, 0.89), "au111": (0.98, 0.86, 0.95), "cu111": (0.94, 0.80, 0.75)}

print(
    "| model | classes | AUROC | bal. acc. | precision | good/bad AUROC "
    "| paper (AUROC / bal. acc. / precision) | train time (2 cores) |"
)
print("|---|---|---|---|---|---|---|---|")
for folder in sorted(p for p in models_root().iterdir() if (p / "manifest.json").is_file()):
    m = load_manifest(folder, verify=False)
    e = m.metrics["table"]["Ensemble"]
    paper = PAPER.get(m.name)
    p = " / ".join(f"{v:.2f}" for v in paper) if paper else "—"
    extra = f" + {', '.join(m.extra)} net" if m.extra else ""
    print(
        f"| {m.name} | {len(m.classes)}{extra} | {e['auroc']:.3f} | {e['balanced_accuracy']:.3f} | "
        f"{e['precision']:.3f} | {e['good_bad_auroc']:.3f} | {p} | "
        f"{m.training['seconds'] / 60:.1f} min |"
    )
