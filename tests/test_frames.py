"""Frames and line-chunk assembly."""

from __future__ import annotations

import numpy as np
import pytest

from tipd.frames import Frame, LineAssembler
from tipd.protocol import ProtocolError


def frame(frame_id: str = "f1", rows: int = 10, cols: int = 4) -> Frame:
    data = np.arange(rows * cols, dtype=float).reshape(rows, cols)
    return Frame(data=data, scan_size_nm=(30.0, 30.0), microscope="stm1", frame_id=frame_id)


def test_chunks_in_any_order_assemble_to_the_frame() -> None:
    f = frame()
    asm = LineAssembler()
    partial = None
    for start in (4, 0, 8):
        n = min(4, 10 - start)
        partial = asm.add(f.header(start, n), f.data[start : start + n])
    assert partial is not None and partial.complete and partial.rows_seen == 10
    np.testing.assert_array_equal(partial.frame.data, f.data)
    assert asm.open_frames() == []


def test_partial_frame_has_nan_for_rows_not_scanned() -> None:
    f = frame()
    partial = LineAssembler().add(f.header(0, 3), f.data[:3])
    assert partial.rows_seen == 3 and partial.last_row == 2 and not partial.complete
    assert np.isnan(partial.frame.data[3:]).all()


def test_oldest_open_frame_is_dropped() -> None:
    asm = LineAssembler(max_open=2)
    for k in range(4):
        f = frame(f"f{k}")
        asm.add(f.header(0, 2), f.data[:2])
    assert [p.frame.frame_id for p in asm.open_frames()] == ["f2", "f3"]


def test_chunk_disagreeing_with_its_frame_is_refused() -> None:
    asm = LineAssembler()
    asm.add(frame().header(0, 2), frame().data[:2])
    other = frame(rows=12)
    with pytest.raises(ProtocolError, match="as in frame 'f1'"):
        asm.add(other.header(2, 2), other.data[2:4])


def test_header_round_trip_from_frame() -> None:
    f = frame()
    back = Frame.from_header(f.header(), f.data)
    np.testing.assert_array_equal(back.data, f.data)
    assert back.scan_size_nm == f.scan_size_nm and back.pixel_size_nm == (7.5, 3.0)


def test_a_frame_buffer_holds_what_has_arrived_not_what_a_header_promises() -> None:
    big = Frame(
        data=np.zeros((4096, 4096), dtype=np.float32), scan_size_nm=(100.0, 100.0), frame_id="big"
    )
    asm = LineAssembler()
    partial = asm.add(big.header(0, 1), big.data[:1])
    assert partial.frame.data.nbytes <= 4096 * 8  # one line, not 134 MB
    z = np.arange(64 * 8, dtype=np.float32).reshape(64, 8)
    f = Frame(data=z, scan_size_nm=(10.0, 10.0), frame_id="grow")
    order = [(32, 8), (0, 16), (48, 16), (16, 16), (40, 8)]  # out of order, the end early
    for first, n in order:
        partial = asm.add(f.header(first, n), z[first : first + n])
        assert partial.frame.data.shape[0] <= 64
    assert partial.complete
    np.testing.assert_array_equal(partial.frame.data, z)
