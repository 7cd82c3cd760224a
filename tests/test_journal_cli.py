"""``tipd journal`` reads the journal the daemon writes: found through the same settings, with
each decision's familiarity."""

from __future__ import annotations

from pathlib import Path

import pytest

from tipd.taxonomy import UNFAMILIAR


def test_the_journal_keeps_and_shows_familiarity(tmp_path: Path, tipd_exe: list[str]) -> None:
    import subprocess

    from tipd.journal import Journal

    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.frame("stm1", "f1", 1, "frame", 64, "classified", UNFAMILIAR, {"good": 0.1}, 5.0, "", 0.004)
    j.frame("stm1", "f2", 2, "frame", 64, "classified", "good", {"good": 0.99}, 5.0, "", 0.25)
    j.close()
    out = subprocess.run(
        [*tipd_exe, "journal", "--path", str(path)], capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    assert "unfamiliar" in out[0] and "familiarity 0.004" in out[0]
    assert "familiarity 0.250" in out[1]


def test_journal_finds_the_journal_the_settings_name(tmp_path: Path, tipd_exe: list[str]) -> None:
    import subprocess

    from tipd.journal import Journal

    path = tmp_path / "lab" / "journal.sqlite"
    j = Journal(path)
    j.frame("stm1", "f1", 1, "frame", 64, "classified", "good", {"good": 0.99}, 5.0, "", 0.5)
    j.close()
    config = tmp_path / "tipd.toml"
    config.write_text(f'journal = "{path}"\n')
    out = subprocess.run(
        [*tipd_exe, "journal", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "f1" in out.stdout
    missing = subprocess.run(
        [*tipd_exe, "journal", "--config", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "cannot read it" in missing.stderr


def _journal(path: Path) -> None:
    """A journal of three decisions (one on each taxonomy) and a window, and one command."""
    from tipd.journal import Journal

    j = Journal(path)
    j.frame("stm1", "a", 1, "frame", 64, "classified", "individual_atoms", {"x": 0.9}, 5.0)
    j.frame("stm1", "b", 2, "frame", 64, "classified", "dimers", {"x": 0.8}, 5.0)
    j.frame("stm1", "c", 3, "frame", 64, "classified", "double_tip", {"double_tip": 0.97}, 5.0)
    j.frame("stm1", "c", 3, "window", 32, "classified", "good", {"good": 0.6}, 5.0)
    j.command("id1", "stm1", "c", "pulse", {"bias_V": 2.5, "width_s": 0.1}, {"state": "x"}, "sent")
    j.close()


def test_good_and_bad_mean_the_same_on_every_taxonomy(tmp_path: Path) -> None:
    from tipd.journal import query, states
    from tipd.taxonomy import TAXONOMIES

    for t in TAXONOMIES.values():
        assert set(t.desirable) <= set(states("good"))
        assert set(t.labels) - set(t.desirable) <= set(states("bad"))
    assert not set(states("good")) & set(states("bad"))
    path = tmp_path / "j.sqlite"
    _journal(path)
    good = [r["frame_id"] for r in query(path, states=states("good"), kind="frame")]
    assert good == ["a", "b"]  # Au's individual atoms and H:Si's dimers; the window left out
    assert [r["frame_id"] for r in query(path, states=states("bad"))] == ["c"]


def test_journal_json_gives_objects_and_iso_times(tmp_path: Path, tipd_exe: list[str]) -> None:
    import json
    import subprocess
    from datetime import datetime

    path = tmp_path / "j.sqlite"
    _journal(path)
    for table in ([], ["--commands"]):
        out = subprocess.run(
            [*tipd_exe, "journal", "--path", str(path), "--json", *table],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert rows and out.returncode == 0
        for row in rows:
            stamp = row["t_sent"] if table else row["t"]
            assert datetime.fromisoformat(stamp).tzinfo is not None
            assert isinstance(row["params"] if table else row["confidences"], dict)
    assert rows[0]["params"] == {"bias_V": 2.5, "width_s": 0.1}


def test_journal_csv_reads_back_with_one_column_per_label(
    tmp_path: Path, tipd_exe: list[str]
) -> None:
    import csv
    import io
    import subprocess

    path = tmp_path / "j.sqlite"
    _journal(path)
    out = subprocess.run(
        [*tipd_exe, "journal", "--path", str(path), "--csv", "--frames-only", "--state", "bad"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["frame_id"] for r in rows] == ["c"]
    assert float(rows[0]["p_double_tip"]) == 0.97 and rows[0]["state"] == "double_tip"


def test_the_journal_lives_in_the_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One default journal for `tipd run`, `tipd journal` and the demo: the state folder."""
    from tipd.config import Settings, state_dir

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings().journal == tmp_path / "xdg" / "tipd" / "journal.sqlite"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'sd'}:/elsewhere")  # systemd's
    assert state_dir() == tmp_path / "sd"
    assert Settings().journal == tmp_path / "sd" / "journal.sqlite"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == Path.home() / ".local" / "state" / "tipd"
