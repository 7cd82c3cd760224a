"""tipd against the field's own libraries on the same inputs: the ``.sxm`` reader against
nanonispy2, the ``.sm4`` reader against spym's RHK SM4 parser, Table I's metrics against
scikit-learn, and the fake Nanonis server against the official ``nanonis-spm`` client."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.fake_nanonis import Z_INDEX, FakeNanonis
from tipd.readers import read_any

SM4 = "topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4"


def _same(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Equal to float32 precision, NaN where the other is NaN (no absolute tolerance: heights
    are ~1e-9 m)."""
    nan = np.isnan(ours)
    return bool(
        ours.shape == theirs.shape
        and (nan == np.isnan(theirs)).all()
        and np.allclose(ours[~nan], theirs[~nan], rtol=1e-6, atol=0)
    )


@pytest.mark.parametrize("name", ["FeSe_topography.sxm", "pyspm_test.sxm"])
def test_sxm_reads_as_nanonispy2_reads_it(fixtures_dir: Path, name: str) -> None:
    nap = pytest.importorskip("nanonispy2")
    scan = nap.read.Scan(str(fixtures_dir / name))
    z = scan.signals["Z"]
    forward, backward = (
        read_any(fixtures_dir / name, direction=d) for d in ("forward", "backward")
    )
    assert _same(forward.data, np.asarray(z["forward"]))
    # nanonispy2 gives the retrace as recorded; tipd turns it so x runs as in the trace
    assert _same(backward.data, np.asarray(z["backward"])[:, ::-1])
    assert forward.scan_size_nm == pytest.approx(tuple(scan.header["scan_range"] * 1e9))
    assert forward.bias_V == pytest.approx(float(scan.header["bias"]))


def _spym_sm4() -> ModuleType:
    """spym's RHK SM4 parser (numpy only), loaded without spym's package, which pulls in
    plotting libraries."""
    spec = importlib.util.find_spec("spym")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("spym is not installed")
    path = Path(spec.submodule_search_locations[0]) / "io" / "rhksm4" / "_sm4.py"
    module_spec = importlib.util.spec_from_file_location("spym_sm4", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_sm4_reads_as_spym_reads_it(fixtures_dir: Path) -> None:
    sm4 = _spym_sm4().RHKsm4(str(fixtures_dir / SM4))
    pages = {
        page.attrs["RHK_ScanType"]: page
        for page in sm4._pages
        if page.attrs.get("RHK_Label") == "Topography"
    }
    for direction, scan_type in (("forward", 0), ("backward", 1)):
        page = pages[scan_type]
        a = page.attrs
        theirs = np.asarray(page.data, dtype=np.float64) * a["RHK_Zscale"] + a["RHK_Zoffset"]
        ours = read_any(fixtures_dir / SM4, direction=direction)
        assert _same(ours.data, theirs), direction
        width_nm = abs(a["RHK_Xscale"]) * a["RHK_Xsize"] * 1e9  # pixels × pixel size
        assert ours.scan_size_nm[0] == pytest.approx(width_nm)
        assert ours.bias_V == pytest.approx(a["RHK_Bias"])


def test_table_one_metrics_agree_with_scikit_learn() -> None:
    from sklearn import metrics as sk

    from tipd.train.data import Dataset
    from tipd.train.metrics import auroc, balanced_accuracy, macro_precision

    rng = np.random.default_rng(7)
    n, k = 400, 5
    primary = rng.integers(0, k, n)
    y = np.eye(k, dtype=np.float32)[primary]
    probs = np.clip(y * rng.uniform(0.2, 1.0, (n, k)) + rng.uniform(0, 0.6, (n, k)), 0, 1)
    probs[:40] = np.round(probs[:40], 1)  # ties, which AUROC scores half
    ds = Dataset(x=np.zeros((n, 1, 2, 2)), y=y, primary=primary, labels=tuple("abcde"), source="t")
    for c in range(k):
        assert auroc(y[:, c], probs[:, c]) == pytest.approx(sk.roc_auc_score(y[:, c], probs[:, c]))
    pred = probs.argmax(axis=1)
    assert balanced_accuracy(ds, probs) == pytest.approx(sk.balanced_accuracy_score(primary, pred))
    expected = sk.precision_score(primary, pred, average="macro", zero_division=np.nan)
    assert macro_precision(ds, probs) == pytest.approx(expected)


@pytest.fixture
def fake() -> Iterator[FakeNanonis]:
    server = FakeNanonis(pixels=32, line_time_s=0.004)
    yield server
    server.close()


def test_the_fake_nanonis_answers_the_official_client(fake: FakeNanonis) -> None:
    """The ``nanonis-spm`` client (SPECS' own Python interface) against the fake server that
    stands in for a Nanonis controller in tipd's bridge tests."""
    nanonis_spm = pytest.importorskip("nanonis_spm")
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=10)
    client: Any = nanonis_spm.Nanonis(sock)
    try:
        client.Bias_Set(np.float32(0.75))
        assert client.Bias_Get()[2][0] == pytest.approx(0.75)
        client.Scan_Action(np.uint16(0), np.uint32(1))  # start, scanning down
        grabbed = client.Scan_FrameDataGrab(np.uint32(Z_INDEX), np.uint32(1))
        name, rows, cols, data = grabbed[2][1], grabbed[2][2], grabbed[2][3], grabbed[2][4]
        assert name == "Z (m)" and (rows, cols) == (32, 32)
        assert np.asarray(data).shape == (32, 32)
    finally:
        client.close()
