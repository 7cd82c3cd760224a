"""Closed-loop episodes: the heuristic's eye, episode bookkeeping against the sim's truth, and
the bench script end to end (a few short episodes, shipped model, real ONNX Runtime)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from tipd.closedloop import (
    Episode,
    NoConditioning,
    ScanbotHeuristic,
    TipdConditioner,
    run_episode,
    summarise,
)
from tipd.ensemble import Ensemble
from tipd.frames import Frame
from tipd.models import find
from tipd.preprocess import line_jumps
from tipd.protocol import Command, Reply
from tipd.safety import Limits
from tipd.sim.microscope import ScanSettings

ROOT = Path(__file__).resolve().parents[1]
SMALL = ScanSettings(pixels=64, scan_size_nm=30.0, line_time_s=0.5)


def noisy_frame(rng: np.random.Generator) -> np.ndarray:
    """Drifting, tilted, noisy lines with a random-walk offset: no discontinuity."""
    z = rng.normal(0, 0.01, (128, 128)) + np.linspace(0, 0.3, 128)[None, :]
    return z + np.cumsum(rng.normal(0, 0.003, 128))[:, None]


def test_line_jumps_see_a_tip_change_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert len(line_jumps(noisy_frame(rng))) == 0
    z = noisy_frame(rng)
    z[70:] += 0.2  # the apex got shorter at line 70
    assert list(line_jumps(z)) == [70]
    z[100:] = np.nan  # not scanned yet
    assert list(line_jumps(z)) == [70]
    assert len(line_jumps(np.full((4, 4), 1.0))) == 0  # too few lines to judge


def test_heuristic_indents_after_five_bad_frames_then_moves() -> None:
    rng = np.random.default_rng(1)
    bad = noisy_frame(rng)
    bad[40:] += 0.3
    h = ScanbotHeuristic("stm1")

    def frame(z: np.ndarray) -> Frame:
        return Frame(data=z, scan_size_nm=(30.0, 30.0), microscope="stm1")

    assert [h.decide(frame(bad), 0.0) for _ in range(4)] == [[]] * 4
    crash, move = h.decide(frame(bad), 0.0)
    assert crash.action == "crash" and crash.params.depth_nm == 0.9  # type: ignore[union-attr]
    assert move.action == "move"
    assert h.decide(frame(noisy_frame(rng)), 0.0) == []  # a clean frame resets the run
    for _ in range(4):
        h.decide(frame(bad), 0.0)
    assert h.decide(frame(bad), 0.0)[0].params.depth_nm == 0.9  # type: ignore[union-attr]
    for _ in range(4):
        h.decide(frame(bad), 0.0)
    assert h.decide(frame(bad), 0.0)[0].params.depth_nm == 1.5  # type: ignore[union-attr]


def test_episode_ends_on_three_good_frames_or_the_budget() -> None:
    sharp = run_episode(NoConditioning(), "au111", "sharp", 3, max_frames=10, settings=SMALL)
    assert sharp.recovered and sharp.frames == 3 and sharp.actions == 0
    assert sharp.seconds == 3 * 64 * 0.5
    double = run_episode(NoConditioning(), "au111", "double", 3, max_frames=4, settings=SMALL)
    assert not double.recovered and double.frames == 4


class Reckless:
    """Asks for a pulse far beyond the limits every frame: the episode must count it."""

    name = "reckless"

    def decide(self, frame: Frame, t_s: float) -> list[Command]:
        return [Command(microscope="stm1", action="pulse", params={"bias_V": 9.5, "width_s": 0.1})]  # type: ignore[arg-type]

    def told(self, command: Command, reply: Reply) -> None:
        pass


def test_violations_and_microscope_refusals_are_counted() -> None:
    e = run_episode(Reckless(), "au111", "double", 1, max_frames=3, settings=SMALL)
    assert e.actions == 3 and e.violations == 3
    assert e.refused_by_microscope == 0  # within the microscope's own ±10 V
    strict = Limits(max_bias_V=10.0)
    assert (
        run_episode(Reckless(), "au111", "double", 1, 3, settings=SMALL, limits=strict).violations
        == 0
    )


def test_tipd_conditioner_stays_inside_the_limits() -> None:
    ens = Ensemble(find("au111"), prefer_gpu=False, threads=1)
    for seed, start in enumerate(("double", "blunt", "contaminated")):
        e = run_episode(TipdConditioner(ens, "stm1"), "au111", start, seed, 12, settings=SMALL)
        assert e.violations == 0 and e.refused_by_microscope == 0


def test_summary_counts_unrecovered_episodes_as_never() -> None:
    def ep(recovered: bool, frames: int) -> Episode:
        return Episode("p", "double", 0, recovered, frames, frames * 64.0, 1, 0, 0)

    s = summarise([ep(True, 4), ep(True, 6), ep(False, 60), ep(False, 60), ep(True, 8)])
    assert s.recovered == 3 and s.frames_median == 8 and s.frames_p90 is None  # 4 6 8 ∞ ∞
    assert s.minutes_median is not None and math.isclose(s.minutes_median, 8 * 64 / 60)
    assert summarise([ep(False, 60)] * 3).frames_median is None


def test_bench_script_prints_a_row_per_policy() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "closed_loop.py"),
            "--episodes",
            "2",
            "--max-frames",
            "4",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rows = {line.split()[0] for line in out.splitlines()[2:]}
    assert rows == {"none", "heuristic", "heuristic-1", "tipd"}, out
