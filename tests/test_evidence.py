"""One decision from all the evidence (:func:`tipd.evidence.combine`), with the shipped generic
model's own decision rules: who may speak, who is held back, and what ``bad`` says."""

from __future__ import annotations

import numpy as np

from tipd.ensemble import UNSURE, Decision, decide
from tipd.evidence import ALONE, CONTRADICTED_CAP, Evidence, combine
from tipd.models import find, load_manifest

MANIFEST = load_manifest(find("generic"))


def nets(*voted: float, familiarity: float = 0.5) -> Decision:
    """The nets' decision on votes for good, double_tip, blunt, tip_change, corruption."""
    v = np.array(voted)
    members = np.tile(v, (len(MANIFEST.members), 1))
    return decide(MANIFEST, v, members, familiarity, threshold=0.01)


DOUBLE = nets(0.02, 0.97, 0.0, 0.0, 0.0)
UNFAMILIAR = nets(0.02, 0.97, 0.0, 0.0, 0.0, familiarity=0.0)


def echo(p: float, certain: bool = True) -> Evidence:
    return Evidence("echo", "double_tip", p, "an echo", certain)


def test_the_nets_speak_where_the_physics_agrees_or_cannot_tell() -> None:
    for said in ([echo(0.8)], [echo(0.1, certain=False)], []):
        d = combine(DOUBLE, MANIFEST, said)
        assert d.state == "double_tip" and d.confidence >= 0.97 and d.bad >= 0.97


def test_a_physical_test_that_could_tell_and_found_nothing_holds_the_nets_back() -> None:
    d = combine(DOUBLE, MANIFEST, [echo(0.1)])
    assert d.classes["double_tip"] == CONTRADICTED_CAP
    assert d.state == "unknown" and d.bad <= CONTRADICTED_CAP
    said = {e.source: e.reason for e in d.evidence}
    assert "does not back it" in said["nets"]


def test_the_memory_overrides_a_weak_physical_denial() -> None:
    remembered = Evidence("memory", "double_tip", 0.95, "an echo new since the reference")
    d = combine(DOUBLE, MANIFEST, [echo(0.1), remembered])
    assert d.state == "double_tip" and d.bad >= 0.95


def test_what_the_area_showed_before_is_the_surface() -> None:
    same = Evidence("memory", "good", 0.0, "as the reference")
    d = combine(DOUBLE, MANIFEST, [echo(0.8), same], explained=frozenset({"double_tip"}))
    assert d.classes["double_tip"] <= CONTRADICTED_CAP and d.bad <= CONTRADICTED_CAP
    assert d.state == "unknown"


def test_the_frames_own_physics_alone_never_reaches_a_sure_fault() -> None:
    strong = [echo(0.99), Evidence("physics", "bad", 0.99, "all tests")]
    d = combine(UNFAMILIAR, MANIFEST, strong)
    assert d.bad == 0.99  # reported as found ...
    assert d.state == "double_tip" and d.confidence == ALONE and d.acting_bad == ALONE  # heard


def test_an_unfamiliar_frame_nobody_can_read_stays_unsure() -> None:
    d = combine(UNFAMILIAR, MANIFEST, [echo(0.9, certain=False)])
    assert d.state == "unfamiliar" and d.bad == UNSURE
    weak = combine(UNFAMILIAR, MANIFEST, [echo(0.6), Evidence("physics", "bad", 0.3, "tests")])
    assert weak.state == "unfamiliar" and weak.bad == 0.6  # named by no test strong enough


def test_on_a_frame_the_nets_know_as_good_the_frames_own_physics_says_no_more_than_they() -> None:
    good = nets(0.9, 0.05, 0.02, 0.0, 0.0)
    lines = Evidence("lines", "tip_change", 0.97, "a jump at line 200")
    strong = [echo(0.95), lines, Evidence("physics", "bad", 0.9, "all tests")]
    d = combine(good, MANIFEST, strong)
    assert d.state == good.state and d.bad <= 1 - 0.9 + 1e-9 and d.tip_change <= 0.1 + 1e-9
    assert {e.source for e in d.evidence} >= {"echo", "lines", "physics"}  # still shown
    # the same tests on a frame the nets do not know speak (as above), and so does the memory
    assert combine(nets(0.9, 0.05, 0.02, 0.0, 0.0, familiarity=0.0), MANIFEST, strong).bad >= 0.95
    remembered = Evidence("memory", "double_tip", 0.95, "an echo new since the reference")
    d = combine(good, MANIFEST, [*strong, remembered])
    assert d.state == "double_tip" and d.bad >= 0.95
