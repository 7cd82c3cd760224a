"""A flood of bad messages costs a bounded number of reports, and every one is counted."""

from __future__ import annotations

from pathlib import Path

from tipd.journal import Journal, query
from tipd.ratelimit import OVERFLOW, ErrorBudget


def test_the_first_reports_of_a_second_go_out_and_the_rest_are_summarised() -> None:
    b = ErrorBudget(per_second=3)
    key = ("stm1", "protocol")
    assert [b.admit(key, 10.0 + i * 0.01) for i in range(5)] == [True] * 3 + [False] * 2
    assert b.admit(("stm2", "protocol"), 10.1)  # another microscope has its own budget
    assert b.due(10.5) == []  # the window has not passed
    assert b.due(11.05) == [(key, 2)]  # once, then the key starts afresh
    assert b.due(12.0) == []
    assert b.admit(key, 12.0)


def test_senders_cannot_make_it_remember_unbounded_keys() -> None:
    b = ErrorBudget(per_second=1, max_keys=4)
    for k in range(100):
        b.admit((f"m{k}", "protocol"), 5.0)
    assert len(b._windows) == 5  # four keys and the one the rest share
    assert (OVERFLOW, 95) in b.due(6.5)


def test_old_frame_rows_are_pruned_and_commands_kept(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.frame("stm1", "old", 0, "frame", 8, "classified")
    j.command("c1", "stm1", "old", "pulse", {"bias_V": 2.5}, None, "sent")
    j.db.execute("UPDATE frames SET t = 1000.0")
    j.frame("stm1", "new", 1, "frame", 8, "classified")
    j.prune(before=2000.0)
    j.close()
    assert [r["frame_id"] for r in query(tmp_path / "j.sqlite")] == ["new"]
    assert [r["id"] for r in query(tmp_path / "j.sqlite", "commands")] == ["c1"]
