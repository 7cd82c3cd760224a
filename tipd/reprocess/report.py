"""What a model would have done on a lab's archive, before it goes live: a report on a
reprocessing's table (Markdown, with PNG figures beside it).

* per model: scans judged, the states it decided, the scans it could not read;
* the confusion between two models' states (the table's first model against each other one, or
  against the verdicts the archive kept, ``archive:<model>``);
* where a labels folder of ``tipd web`` is given (its ``labels.csv``, the last label of each
  scan): how often each model's state agrees with the lab's label, and its good/bad AUROC;
* microscope by microscope, what each model's policy would have decided on that sequence of
  frames (advisory: nothing was sent): pulses, crashes and moves, and how many of those on frames
  the lab labelled good;
* each microscope's states over time, one strip per model.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tipd.taxonomy import TAXONOMIES
from tipd.train.metrics import auroc


def lab_labels(folder: Path) -> dict[str, str]:
    """The lab's labels in a ``tipd web`` labels folder: scan path → class (the last label of
    each scan; an undo takes it back)."""
    out: dict[str, str] = {}
    log = folder / "labels.csv"
    if not log.is_file():
        return out
    with log.open(newline="") as fh:
        for row in csv.reader(fh):
            if len(row) < 4:
                continue
            _, cls, _, source = row[:4]
            if cls.startswith("undo "):
                out.pop(source, None)
            else:
                out[source] = cls
    return out


def _rows(table: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(table).to_pylist()
    return rows


def _confusion_png(a: str, b: str, states: list[str], m: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(states), 1.0 + 0.6 * len(states)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(states)), states, rotation=45, ha="right")
    ax.set_yticks(range(len(states)), states)
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    for i in range(len(states)):
        for j in range(len(states)):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _timeline_png(mic: str, rows: list[dict[str, Any]], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = sorted({str(r["state"]) for r in rows if r.get("state")})
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.35 * len(states)))
    for k, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model and r.get("state")]
        t = np.array([r["t"] for r in mine], dtype=float)
        y = np.array([states.index(r["state"]) for r in mine], dtype=float) + 0.15 * k
        ax.plot((t - t.min()) / 60 if len(t) else t, y, ".", label=model, markersize=4)
    ax.set_yticks(range(len(states)), states)
    ax.set_xlabel("minutes")
    ax.set_title(mic)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(table: Path, out: Path, labels: Path | None = None) -> Path:
    """Write ``out/report.md`` and its figures from reprocessing ``table``; returns the
    Markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(table)
    models = list(dict.fromkeys(r["model"] for r in rows))
    labelled = lab_labels(labels) if labels is not None else {}
    lines = [f"# Reprocessing: {table.name}", ""]
    lines += [
        f"{len({r['path'] for r in rows})} scans, {len(models)} model(s): {', '.join(models)}.",
        "",
        "| model | judged | not readable | states |",
        "|---|---|---|---|",
    ]
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        bad = [r for r in mine if r.get("error")]
        said = Counter(str(r["state"]) for r in mine if not r.get("error"))
        top = ", ".join(f"{s} {n}" for s, n in said.most_common(6))
        lines.append(f"| {model} | {len(mine) - len(bad)} | {len(bad)} | {top} |")
    by_key = {(r["path"], r["model"]): r for r in rows if not r.get("error")}
    for other in models[1:]:
        a, b = models[0], other
        pairs = [(r, by_key.get((r["path"], b))) for r in rows if r["model"] == a]
        both = [(x["state"], y["state"]) for x, y in pairs if y is not None and not x.get("error")]
        states = sorted({s for p in both for s in p})
        m = np.zeros((len(states), len(states)), dtype=int)
        for x, y in both:
            m[states.index(x), states.index(y)] += 1
        png = out / f"confusion-{_safe(a)}-{_safe(b)}.png"
        if states:
            _confusion_png(a, b, states, m, png)
        agree = sum(x == y for x, y in both)
        lines += [
            "",
            f"## {a} against {b}",
            "",
            f"The same state on {agree} of {len(both)} scans.",
            "",
            f"![confusion]({png.name})",
        ]
    if labelled:
        lines += ["", "## Against the lab's labels", "", "| model | labelled | same state "
                  "| good/bad AUROC (`bad`) |", "|---|---|---|---|"]  # fmt: skip
        for model in models:
            mine = [r for r in rows if r["model"] == model and r["path"] in labelled]
            mine = [r for r in mine if not r.get("error")]
            same = sum(str(r["state"]) == labelled[r["path"]] for r in mine)
            y = [labelled[r["path"]] not in _GOOD for r in mine]
            badness = np.array([r["bad"] for r in mine])
            score = f"{auroc(np.array(y, float), badness):.2f}" if len(set(y)) == 2 else "n/a"
            lines.append(f"| {model} | {len(mine)} | {same} | {score} |")
    lines += ["", "## What each model's policy would have decided", "",
              "Advisory: the decision step's policy and safety gate on each microscope's frames "
              "in time order (a batch at a time), nothing sent.", "",
              "| microscope | model | frames | pulses | crashes | moves | of them on frames "
              "labelled good |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    microscopes = sorted({r["microscope"] for r in rows})
    for mic in microscopes:
        for model in models:
            mine = [r for r in rows if r["microscope"] == mic and r["model"] == model]
            acts = Counter(a for r in mine for a in str(r.get("actions") or "").split(",") if a)
            on_good = sum(
                1 for r in mine
                if r.get("actions") and labelled.get(r["path"]) in _GOOD
            )  # fmt: skip
            lines.append(
                f"| {mic} | {model} | {len(mine)} | {acts['pulse']} | {acts['crash']} "
                f"| {acts['move']} | {on_good if labelled else 'no labels'} |"
            )
    lines += ["", "## States over time", ""]
    for mic in microscopes:
        png = out / f"states-{_safe(mic)}.png"
        _timeline_png(mic, [r for r in rows if r["microscope"] == mic], models, png)
        lines += [f"![states of {mic}]({png.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


#: the classes a lab labels a good tip by, in every taxonomy
_GOOD = {d for t in TAXONOMIES.values() for d in t.desirable}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
