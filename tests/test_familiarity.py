"""Familiarity: frames like the training frames are familiar, others are not, and an
unfamiliar frame is never the ground for a pulse or a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tipd import familiarity
from tipd.ensemble import UNSURE, Ensemble, decide
from tipd.frames import Frame
from tipd.models import ModelError, find, load_manifest
from tipd.scanlines import TipChangeEvidence
from tipd.synth.generate import drawn_as, generate
from tipd.taxonomy import UNFAMILIAR
from tipd.train.provenance import frames_version


def clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of two classes, ``(n, 4)``, and their class index."""
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % 2
    centres = np.array([[0.0, 0, 0, 0], [5.0, 5, 0, 0]])
    return centres[cls] + rng.normal(0, 1, (n, 4)), cls


@pytest.fixture(scope="module")
def stats() -> familiarity.Familiarity:
    f, cls = clusters(2000, 0)
    val, _ = clusters(1000, 1)
    return familiarity.fit(f, cls, val, np.linspace(0.1, 0.4, 2000))


def test_frames_like_the_training_frames_are_familiar_and_others_are_not(
    stats: familiarity.Familiarity,
) -> None:
    test, _ = clusters(2000, 2)
    fam = stats.feature_familiarity(test)
    # the familiarity of frames from the training distribution is uniform on [0, 1]
    assert np.mean(fam < 0.01) == pytest.approx(0.01, abs=0.01)
    assert np.median(fam) == pytest.approx(0.5, abs=0.05)
    far = np.array([[2.5, 2.5, 4, 0], [0, 0, 8, 0], [20, 20, 20, 20]])
    assert list(stats.feature_familiarity(far)) == [0.0, 0.0, 0.0]
    # a point at a class centre is as familiar as can be, at either class
    assert list(stats.feature_familiarity(np.array([[0.0, 0, 0, 0], [5.0, 5, 0, 0]]))) == [1, 1]


def test_a_scale_the_model_never_saw_is_unfamiliar(stats: familiarity.Familiarity) -> None:
    centre = np.zeros((4, 4))
    lo, hi = stats.pixel_nm
    assert lo == pytest.approx(0.1 * familiarity.ZOOM_MIN) and hi == pytest.approx(0.4)
    pixel: list[float | None] = [lo, hi, hi * 1.01, None]
    assert list(stats.score(centre, pixel)) == [1.0, 1.0, 0.0, 1.0]
    assert list(stats.score(centre, [lo * 0.99, 0.0, float("nan"), 1e3])) == [0.0, 1.0, 1.0, 0.0]


def test_statistics_round_trip_without_pickle(
    stats: familiarity.Familiarity, tmp_path: Path
) -> None:
    path = tmp_path / "f.npz"
    stats.save(path)
    again = familiarity.Familiarity.load(path)
    x = np.random.default_rng(3).normal(0, 2, (50, 4))
    np.testing.assert_array_equal(again.feature_familiarity(x), stats.feature_familiarity(x))
    assert again.threshold == stats.threshold


LINES_NONE = TipChangeEvidence(0.0, None, 0.0)


def test_an_unfamiliar_frame_gets_its_own_state_and_no_opinion_on_bad() -> None:
    m = load_manifest(find("generic"))
    voted = np.array([0.0, 1.0, 0.0, 0.0, 0.0])  # double tip, at 1.00
    d = decide(m, voted, np.zeros((3, 5)), 0.002, LINES_NONE, 0.01)
    assert d.state == UNFAMILIAR and not d.familiar and not d.desirable
    assert d.bad == UNSURE and d.tip_change == 0.0 and d.confidence == pytest.approx(0.998)
    assert d.classes["double_tip"] == 1.0  # what the model said stays visible
    # the same outputs on a familiar frame: the model's state, as ever
    d = decide(m, voted, np.zeros((3, 5)), 0.01, LINES_NONE, 0.01)
    assert d.state == "double_tip" and d.familiar and d.bad == 1.0 and d.confidence == 1.0
    # no statistics: every frame counts as familiar
    assert decide(m, voted, np.zeros((3, 5))).state == "double_tip"


def test_scan_lines_name_a_tip_change_on_frames_the_model_does_not_know() -> None:
    m = load_manifest(find("generic"))
    voted = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    jump = TipChangeEvidence(0.95, 200, 14.0)
    d = decide(m, voted, np.zeros((3, 5)), 0.0, jump, 0.01)
    assert d.state == "tip_change" and d.confidence == 0.95
    assert d.bad == 0.95 and d.tip_change == 0.95
    weak = TipChangeEvidence(0.3, 200, 4.0)
    d = decide(m, voted, np.zeros((3, 5)), 0.0, weak, 0.01)
    assert d.state == UNFAMILIAR and d.tip_change == 0.3 and d.bad == UNSURE
    # on a familiar frame the model decides, whatever the lines say
    good = np.array([0.97, 0.0, 0.0, 0.0, 0.0])
    sure = TipChangeEvidence(0.99, 9, 30.0)
    d = decide(m, good, np.zeros((3, 5)), 0.5, sure, 0.01)
    assert d.state == "good" and d.tip_change == 0.0 and d.bad == pytest.approx(0.03)
    corrupt = np.array([0.0, 0.0, 0.0, 0.0, 0.99])  # corrupted frames jump too: still a move
    assert decide(m, corrupt, np.zeros((3, 5)), 0.5, sure, 0.01).state == "corruption"
    unsure = np.array([0.6, 0.3, 0.1, 0.2, 0.1])  # below every threshold: unknown
    d = decide(m, unsure, np.zeros((3, 5)), 0.5, sure, 0.01)
    assert d.state == "unknown" and d.tip_change == pytest.approx(0.2)


def test_the_shipped_generic_model_knows_its_frames_and_not_a_5_micron_scan() -> None:
    ens = Ensemble(find("generic"), prefer_gpu=False)
    assert ens.familiarity is not None
    version = frames_version(ens.manifest)  # the frames it was fitted on
    frames = []
    for i in [i for i in range(40) if drawn_as("generic", version, 3, i)][:10]:
        g = generate("generic", i, seed=3, pixels=128)  # held-out seed
        frames.append(Frame(data=g.heights_m, scan_size_nm=g.scan_size_nm))
    decisions = ens.classify(frames)
    assert sum(d.familiar for d in decisions) >= 9
    assert all(d.familiarity is not None and 0 <= d.familiarity <= 1 for d in decisions)
    big = ens.classify([Frame(data=frames[0].data, scan_size_nm=(5000.0, 5000.0))])[0]
    assert big.familiarity == 0.0 and not big.familiar and big.state != "good"


def test_a_tampered_familiarity_file_stops_the_model(tmp_path: Path) -> None:
    folder = tmp_path / "generic"
    shutil.copytree(find("generic"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    stats = folder / manifest["familiarity"]["file"]
    stats.write_bytes(stats.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match=r"familiarity\.npz: sha256"):
        load_manifest(folder)


def test_fitting_leaves_the_graph_as_it_is(tiny_model: Path, fitted_tiny: Path) -> None:
    x = np.random.default_rng(4).uniform(-1, 1, (3, 1, 128, 128)).astype(np.float32)
    before, after = Ensemble(tiny_model).run(x), Ensemble(fitted_tiny).run(x)
    assert after.features.shape[0] == 3 and after.features.ndim == 2
    for name in ("members", "voted", "votes", "features"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name))
    assert load_manifest(fitted_tiny).graph == load_manifest(tiny_model).graph  # same sha256
    m = load_manifest(fitted_tiny)
    assert m.familiarity is not None and m.training["familiarity"]["train"].startswith("tipd synth")
    lo, hi = m.training["familiarity"]["pixel_nm"]
    assert 0 < lo < hi < 1  # H:Si frames: 4–20 nm at 128 px
