"""Reading the frame socket's messages (:mod:`tipd.intake`): rejections, skipped frames, and
windows of a frame in progress, on a real journal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tipd.frames import Frame
from tipd.intake import Intake, Rejected, Skipped, Windows, Work, decode
from tipd.journal import Journal
from tipd.microscopes import Microscopes, Rulebook
from tipd.modelset import ModelSet
from tipd.policy import PolicyConfig
from tipd.protocol import ProtocolError, encode_frame
from tipd.safety import Limits


def no_models() -> ModelSet:
    raise AssertionError("no surface is named: the models are not asked")


@pytest.fixture
def intake(tmp_path: Path) -> Intake:
    rules = Rulebook(PolicyConfig(), Limits(), None, frozenset({"good"}))
    mics = Microscopes(Journal(tmp_path / "j.sqlite"), lambda: rules)
    return Intake(mics, no_models, Counter())


def frame(rows: int = 32, microscope: str = "stm1") -> Frame:
    z = np.random.default_rng(0).normal(0, 1e-10, (rows, 16))
    return Frame(z, (10.0, 10.0), microscope=microscope, frame_id="f1", position_nm=(5.0, 6.0))


def take(intake: Intake, parts: list[bytes], newest: bool = True) -> list[object]:
    taken = intake.take(parts, decode(parts), newest, [], 2, Windows(lines=16, every=8))
    return taken.items  # type: ignore[return-value]


def test_a_bad_message_is_rejected_with_an_error_that_holds_no_frames() -> None:
    f = frame()
    bad = decode(encode_frame(f.header(), np.full(f.shape, np.nan)))
    assert isinstance(bad, ProtocolError) and "finite" in str(bad)
    # no traceback, no context: nothing ties the error to the frames that read the batch
    assert bad.__traceback__ is None and bad.__context__ is None


def test_whole_frames_are_decided_or_skipped_and_microscopes_are_bounded(intake: Intake) -> None:
    (work,) = take(intake, encode_frame(frame().header(), frame().data))
    assert isinstance(work, Work) and work.kind == "frame" and work.rows_seen == 32
    assert work.mic.position_nm == (5.0, 6.0)
    (skipped,) = take(intake, encode_frame(frame().header(), frame().data), newest=False)
    assert isinstance(skipped, Skipped)
    take(intake, encode_frame(frame(microscope="stm2").header(), frame().data))
    (refused,) = take(intake, encode_frame(frame(microscope="stm3").header(), frame().data))
    assert isinstance(refused, Rejected) and "already serving 2 microscopes" in refused.detail
    (garbage,) = take(intake, [b"frame.stm9", b"{not json", b""])
    assert isinstance(garbage, Rejected) and garbage.microscope == "stm9"
    assert intake.counters["frames"] == 3 and intake.counters["skipped"] == 1


def test_line_chunks_become_windows_of_the_newest_lines(intake: Intake) -> None:
    f = frame(rows=40)
    windows = []
    for first in range(0, 40, 4):
        for item in take(intake, encode_frame(f.header(first, 4), f.data[first : first + 4])):
            assert isinstance(item, Work)
            windows.append((item.first_row, item.frame.shape[0], item.rows_seen))
    # every 8 lines once 16 are in: the newest 16 rows each time
    assert windows == [(0, 16, 16), (8, 16, 24), (16, 16, 32), (24, 16, 40)]
