"""The virtual microscope in-process: limits at their edges, once-only execution, and the state
change each command promises."""

from __future__ import annotations

import numpy as np
import pytest

from tipd.preprocess import flatten_lines
from tipd.protocol import Command
from tipd.sim.microscope import ScanSettings, SimLimits, VirtualMicroscope
from tipd.sim.tipstate import TipRates


def mic(start_tip: str = "sharp", seed: int = 0, **kw: object) -> VirtualMicroscope:
    settings = ScanSettings(pixels=48, scan_size_nm=30.0, line_time_s=0.0, chunk_lines=16)
    rates = TipRates(**{"change_per_line": 0.0, "pickup_per_frame": 0.0, **kw})  # type: ignore[arg-type]
    return VirtualMicroscope(
        "au111", seed=seed, settings=settings, rates=rates, start_tip=start_tip
    )


def scan_frame(m: VirtualMicroscope) -> tuple[np.ndarray, dict[str, object]]:
    if m.frame is None:
        m.start_frame()
    while not m.frame_complete:
        m.scan_lines(16)
    frame, truth = m.finish_frame()
    return frame.data, truth


def cmd(action: str, **params: float) -> Command:
    return Command(microscope="stm1", action=action, params=params)  # type: ignore[arg-type]


LIM = SimLimits()


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        (cmd("pulse", bias_V=LIM.max_bias_V, width_s=0.1), True),
        (cmd("pulse", bias_V=-LIM.max_bias_V, width_s=0.1), True),
        (cmd("pulse", bias_V=LIM.max_bias_V + 1e-6, width_s=0.1), False),
        (cmd("pulse", bias_V=-LIM.max_bias_V - 1e-6, width_s=0.1), False),
        (cmd("pulse", bias_V=2.0, width_s=LIM.min_pulse_s), True),
        (cmd("pulse", bias_V=2.0, width_s=LIM.min_pulse_s * 0.999), False),
        (cmd("pulse", bias_V=2.0, width_s=LIM.max_pulse_s), True),
        (cmd("pulse", bias_V=2.0, width_s=LIM.max_pulse_s * 1.001), False),
        (cmd("crash", depth_nm=LIM.max_crash_nm, bias_V=0.02), True),
        (cmd("crash", depth_nm=LIM.max_crash_nm + 1e-6, bias_V=0.02), False),
        (cmd("crash", depth_nm=1.0, bias_V=LIM.max_bias_V + 0.1), False),
        (cmd("move", dx_nm=LIM.max_move_nm, dy_nm=0.0), True),
        (cmd("move", dx_nm=3000.0, dy_nm=4000.0001), False),
    ],
)
def test_hardware_limits_at_their_edges(command: Command, ok: bool) -> None:
    m = mic()
    m.start_frame()
    done = m.execute(command)
    assert (done.reply.status == "done") is ok, done.reply.detail
    if not ok:
        assert (
            "outside" in done.reply.detail
            or "above" in done.reply.detail
            or "beyond" in done.reply.detail
        )


def test_a_command_id_is_executed_once() -> None:
    m = mic("double")
    m.start_frame()
    c = cmd("move", dx_nm=100.0, dy_nm=0.0)
    first = m.execute(c)
    again = m.execute(c)
    assert first.reply == again.reply and again.record is None and again.seconds == 0
    assert m.position_nm == (100.0, 0.0)


def test_other_microscope_is_rejected() -> None:
    m = mic()
    done = m.execute(Command(microscope="stm9", action="rescan", params={}))
    assert done.reply.status == "rejected" and "stm9" in done.reply.detail


def test_move_shows_a_fresh_area() -> None:
    m = mic()
    before, _ = scan_frame(m)
    assert m.execute(cmd("move", dx_nm=500.0, dy_nm=-200.0)).reply.status == "done"
    after, truth_after = scan_frame(m)
    assert truth_after["position_nm"] == [500.0, -200.0]
    fb, fa = flatten_lines(before).ravel(), flatten_lines(after).ravel()
    assert abs(np.corrcoef(fb, fa)[0, 1]) < 0.5  # a different area, not the same one again


def test_pulses_repair_double_tips_sometimes_and_not_always() -> None:
    outcomes = []
    for seed in range(40):
        m = mic("double", seed=seed)
        m.start_frame()
        m.execute(cmd("pulse", bias_V=6.0, width_s=0.2))
        outcomes.append(m.tip.kind)
    assert "sharp" in outcomes
    assert any(k != "sharp" for k in outcomes)


def test_stronger_pulses_repair_more_often() -> None:
    def repaired(bias: float) -> int:
        n = 0
        for seed in range(150):
            m = mic("double", seed=seed)
            m.execute(cmd("pulse", bias_V=bias, width_s=0.2))
            n += m.tip.kind == "sharp"
        return n

    assert repaired(8.0) > repaired(0.5)


def test_crash_reshapes_the_tip_and_leaves_a_crater_later_scans_show() -> None:
    m = mic("blunt", seed=3)
    before, _ = scan_frame(m)
    m.start_frame()
    m.scan_lines(24)  # the tip is at the middle of the frame
    done = m.execute(cmd("crash", depth_nm=2.0, bias_V=0.02))
    assert done.reply.status == "done" and "crater" in done.reply.detail
    assert done.record is not None and done.record["tip_before"] != done.record["tip_after"]
    crater = m.sample.craters[-1]
    m.frame = None
    after, truth = scan_frame(m)
    assert truth["craters"] == 1
    # pixel of the crater centre (frame centred at 0, 30 nm / 48 px, row 0 = first line)
    px = 30.0 / 48
    col, row = int((crater.x + 15) / px), int((crater.y + 15) / px)
    fa, fb = flatten_lines(after), flatten_lines(before)
    patch = (slice(max(row - 2, 0), row + 3), slice(max(col - 2, 0), col + 3))
    assert fa[patch].mean() < fb[patch].mean() - 0.1e-9


def test_withdraw_stops_scanning_until_rescan() -> None:
    m = mic()
    m.start_frame()
    assert m.execute(cmd("withdraw")).reply.status == "done"
    assert not m.scanning
    refused = m.execute(cmd("pulse", bias_V=2.0, width_s=0.1))
    assert refused.reply.status == "rejected" and "withdrawn" in refused.reply.detail
    m.execute(cmd("rescan"))
    assert not m.withdrawn
    scan_frame(m)


def test_spontaneous_tip_changes_appear_in_the_truth_not_in_the_frame() -> None:
    m = mic("sharp", seed=5, change_per_line=0.05)
    data, truth = scan_frame(m)
    assert truth["changes"], "with 5% per line a 48-line frame sees a change"
    assert "tip_change" in truth["labels"]  # type: ignore[operator]
    assert data.shape == (48, 48) and np.isfinite(data).all()


def test_double_tip_truth_labels() -> None:
    m = mic("double", seed=2)
    _, truth = scan_frame(m)
    assert truth["kind"] == "double" and "double_tip" in truth["labels"]  # type: ignore[operator]
    assert truth["good"] is False
