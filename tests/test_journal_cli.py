"""``tipd journal`` reads the journal the daemon writes: found through the same settings, with
each decision's familiarity."""

from __future__ import annotations

from pathlib import Path

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
