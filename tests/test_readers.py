"""Readers against real files from other labs (../shared/fixtures, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tipd.preprocess import flatten_lines
from tipd.readers import ReaderError, read_any


@pytest.mark.parametrize(
    ("name", "shape", "size_nm", "z_span_nm"),
    [
        ("FeSe_topography.sxm", (224, 224), (20.0, 20.0), (0.05, 2.0)),
        ("pyspm_test.sxm", (256, 256), (5000.0, 5000.0), (5.0, 500.0)),
        ("20201111--4_1.Z_mtrx", (400, 400), (100.0, 100.0), (0.3, 10.0)),
        ("test_single_image.gwy", (512, 512), (30.0, 30.0), (0.1, 50.0)),
        # spym reports 74.4 nm: (N-1)·pitch between pixel centres; the scan is N·pitch = 75 nm
        (
            "topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4",
            (128, 128),
            (75.0, 75.0),
            (0.5, 50.0),
        ),
    ],
)
def test_real_files(
    fixtures_dir: Path,
    name: str,
    shape: tuple[int, int],
    size_nm: tuple[float, float],
    z_span_nm: tuple[float, float],
) -> None:
    frame = read_any(fixtures_dir / name)
    assert frame.shape == shape
    assert frame.scan_size_nm == pytest.approx(size_nm, rel=1e-4)
    assert frame.unit == "m" and frame.channel == "z"
    span = float(np.nanmax(frame.data) - np.nanmin(frame.data)) * 1e9
    assert z_span_nm[0] < span < z_span_nm[1]
    assert np.isfinite(frame.data).mean() > 0.99


def test_sxm_header_values(fixtures_dir: Path) -> None:
    f = read_any(fixtures_dir / "FeSe_topography.sxm")
    assert f.bias_V == pytest.approx(0.045) and f.setpoint_A == pytest.approx(4.5e-10)
    assert f.angle_deg == pytest.approx(45.0)


def test_backward_scans_are_flipped_to_match_forward(fixtures_dir: Path) -> None:
    for name in ("FeSe_topography.sxm", "20201111--4_1.Z_mtrx"):
        # compare after line flattening, so that lateral structure decides, not the slow tilt
        fwd = flatten_lines(read_any(fixtures_dir / name, direction="forward").data)
        bwd = flatten_lines(read_any(fixtures_dir / name, direction="backward").data)
        same = np.corrcoef(fwd.ravel(), bwd.ravel())[0, 1]
        mirrored = np.corrcoef(fwd.ravel(), bwd[:, ::-1].ravel())[0, 1]
        assert same > 0.4 and mirrored < 0.5 * same, (name, same, mirrored)


def test_matrix_and_sm4_metadata(fixtures_dir: Path) -> None:
    m = read_any(fixtures_dir / "20201111--4_1.Z_mtrx")
    assert m.bias_V == pytest.approx(0.6) and m.setpoint_A == pytest.approx(3e-10)
    r = read_any(fixtures_dir / "topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4")
    assert r.bias_V == pytest.approx(0.5, rel=1e-3) and r.setpoint_A == pytest.approx(
        1e-10, rel=1e-3
    )


def test_npy_with_sidecar(tmp_path: Path) -> None:
    z = np.random.default_rng(0).normal(0, 1e-10, (32, 48))
    np.save(tmp_path / "scan.npy", z)
    (tmp_path / "scan.json").write_text(json.dumps({"scan_size_nm": [30, 20], "bias_V": 1.5}))
    f = read_any(tmp_path / "scan.npy")
    assert f.shape == (32, 48) and f.scan_size_nm == (30.0, 20.0) and f.bias_V == 1.5
    np.testing.assert_array_equal(f.data, z)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("a.sxm", b"not a scan", "SCANIT_END"),
        ("a.gwy", b"GWYOxxxx", "not a Gwyddion 2 file"),
        ("a.sm4", b"\x10\x00" + b"x" * 100, "not an RHK SM4 file"),
        ("a.npy", b"garbage", "not a plain numeric"),
        ("a.tif", b"II*\x00", "unknown file type"),
        ("a.Z_mtrx", b"junk", "a.Z_mtrx"),
    ],
)
def test_bad_files_get_a_clear_error(
    tmp_path: Path, name: str, content: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ReaderError, match=needle):
        read_any(path)


@pytest.mark.parametrize(
    ("fill", "needle"), [(np.nan, "every pixel is NaN"), (np.inf, "infinite heights")]
)
def test_heights_without_a_finite_value_or_with_an_infinity_are_refused(
    tmp_path: Path, fill: float, needle: str
) -> None:
    z = np.full((16, 16), np.nan)
    z[:4] = 1e-10  # a frame scanned in part reads, its unscanned lines NaN
    np.save(tmp_path / "part.npy", z)
    (tmp_path / "part.json").write_text(json.dumps({"scan_size_nm": 10}))
    assert np.isnan(read_any(tmp_path / "part.npy").data[4:]).all()
    z[:4] = fill
    np.save(tmp_path / "bad.npy", z)
    (tmp_path / "bad.json").write_text(json.dumps({"scan_size_nm": 10}))
    with pytest.raises(ReaderError, match=needle):
        read_any(tmp_path / "bad.npy")


@pytest.mark.parametrize(
    ("size", "want"), [(30, (30.0, 30.0)), (12.5, (12.5, 12.5)), ([30, 20], (30.0, 20.0))]
)
def test_npy_sidecar_scan_size_is_a_pair_or_one_number(
    tmp_path: Path, size: object, want: tuple[float, float]
) -> None:
    np.save(tmp_path / "scan.npy", np.zeros((8, 8)))
    (tmp_path / "scan.json").write_text(json.dumps({"scan_size_nm": size}))
    assert read_any(tmp_path / "scan.npy").scan_size_nm == want


@pytest.mark.parametrize("size", ["30", [30], [30, 20, 10], [30, "x"], True, None])
def test_npy_sidecar_with_a_bad_scan_size_gets_a_clear_error(tmp_path: Path, size: object) -> None:
    np.save(tmp_path / "scan.npy", np.zeros((8, 8)))
    (tmp_path / "scan.json").write_text(json.dumps({"scan_size_nm": size}))
    with pytest.raises(ReaderError, match="scan_size_nm"):
        read_any(tmp_path / "scan.npy")


def test_npy_refuses_pickles_and_missing_sidecar(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ReaderError, match="not a plain numeric"):
        read_any(tmp_path / "obj.npy")
    np.save(tmp_path / "bare.npy", np.zeros((4, 4)))
    with pytest.raises(ReaderError, match="needs a sidecar"):
        read_any(tmp_path / "bare.npy")


def test_truncated_sxm(fixtures_dir: Path, tmp_path: Path) -> None:
    raw = (fixtures_dir / "FeSe_topography.sxm").read_bytes()
    (tmp_path / "cut.sxm").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReaderError, match="truncated"):
        read_any(tmp_path / "cut.sxm")


def test_gwy_directions_follow_the_channel_titles(fixtures_dir: Path) -> None:
    """The fixture's one field has no direction in its title: it is the forward scan, and a
    backward one is refused with the fields the file has."""
    from tipd.readers import ReaderError, read_any

    path = fixtures_dir / "test_single_image.gwy"
    assert read_any(path).direction == "forward"
    with pytest.raises(ReaderError, match="no backward data field; its fields: 'test_single"):
        read_any(path, direction="backward")
