"""The command line explains itself: help and a default on every option, and every user error
is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tipd.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "tipd") -> list[tuple[str, Any]]:
    """(name, parser) of every sub-command, nested ones (``bridge nanonis``) included."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((f"{prefix} {name}", sub))
                out += _commands(sub, f"{prefix} {name}")
    return out


def test_every_option_of_every_command_says_what_it_is() -> None:
    commands = _commands(build_parser())
    assert len(commands) >= 18
    for name, parser in commands:
        assert parser.description, name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest}: no help"
            text = parser.format_help()
            if action.option_strings and action.default not in (None, False, []):
                # the default is shown in the help text, whatever it is
                shown = "default" in action.help or f"(default: {action.default}" in " ".join(
                    text.split()
                )
                assert shown, f"{name} {action.option_strings[0]}: default not shown"


def _run(tipd_exe: list[str], *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*tipd_exe, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A folder of labelled scans with one sub-folder misnamed (``double`` for double_tip)."""
    folder = tmp_path / "lab" / "double"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros((64, 64)))
    (folder / "a.json").write_text(json.dumps({"scan_size_nm": 10}))
    return tmp_path / "lab"


def test_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, tipd_exe: list[str], lab: Path
) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("advisory = \n")
    bad_value = tmp_path / "value.toml"
    bad_value.write_text('advisory = "maybe"\n')
    not_db = tmp_path / "notes.txt"
    not_db.write_text("not a journal")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["run", "--config", str(bad_toml)], {}, "not valid TOML"),
        (["run", "--config", str(bad_value)], {}, "advisory"),
        (["journal", "--last", "2"], {"TIPD_ADVISORY": "maybe"}, "TIPD_ADVISORY"),
        (["journal", "--path", str(tmp_path / "none.sqlite")], {}, "no journal at"),
        (["journal", "--path", str(not_db)], {}, "not a database"),
        (["journal", "--path", str(not_db), "--state", "sharpish"], {}, "known: good, bad"),
        (["replay", str(tmp_path / "nowhere")], {}, "not a folder"),
        (["replay", str(empty)], {}, "no scan files"),
        (["synth", "--compare", str(tmp_path / "c.png")], {}, "--fixtures"),
        (["synth", "--surface", "au111"], {}, "give --surface, --n and --out"),
        (["sim", "--pixels", "-3"], {}, "must be above zero"),
        (["classify", "x.sxm", "--direction", "sideways"], {}, "invalid choice"),
        (["classify", "x.sxm", "--model", "nonesuch"], {}, "no model 'nonesuch'"),
        (["evaluate", "--model", "generic", "--data", str(lab)], {}, "name them good, double_tip"),
        (["events", "--endpoint", "nowhere", "--seconds", "1"], {}, "Invalid argument"),
        (["hold"], {}, "required: microscope"),
    ]
    for args, env, words in cases:
        out = _run(tipd_exe, *args, env=env)
        lines = [x for x in out.stderr.splitlines() if not x.startswith("listening")]
        assert out.returncode == 2, (args, out.stderr)
        assert len(lines) == 1 and "Traceback" not in out.stderr, (args, out.stderr)
        assert words in lines[0], (args, lines[0])


def test_classify_prints_a_table_a_microscopist_reads(tmp_path: Path, tipd_exe: list[str]) -> None:
    """File, scan size, pixels, bias, state, confidences; states that are not classes are
    explained under the table; a folder is every scan in it."""
    from tipd.synth.generate import generate

    frame = generate("generic", index=0, seed=3, pixels=128)
    np.save(tmp_path / "scan.npy", frame.heights_m)
    w, _ = frame.scan_size_nm
    (tmp_path / "scan.json").write_text(json.dumps({"scan_size_nm": w, "bias_V": 0.8}))
    np.save(tmp_path / "flat.npy", np.zeros((128, 128)))
    (tmp_path / "flat.json").write_text(json.dumps({"scan_size_nm": 5000}))  # 5 µm
    out = _run(tipd_exe, "classify", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split()[:4] == ["file", "scan", "pixels", "bias"]
    rows = {Path(line.split()[0]).name: line for line in lines[2:4]}
    assert f"{w:.4g}×{w:.4g} nm" in rows["scan.npy"] and "128×128" in rows["scan.npy"]
    assert "0.8 V" in rows["scan.npy"]
    assert "unfamiliar" in rows["flat.npy"]  # 5 µm: far beyond every training scale
    assert any(x.startswith("unfamiliar: the frame is unlike") for x in lines[4:])
    sheet = _run(tipd_exe, "classify", str(tmp_path), "--sheet", str(tmp_path / "v.png"))
    assert sheet.returncode == 0 and (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
    backward = _run(tipd_exe, "classify", str(tmp_path / "scan.npy"), "--direction", "backward")
    assert backward.returncode == 1 and "holds one forward frame" in backward.stdout


def test_events_says_what_it_waits_on(tipd_exe: list[str]) -> None:
    from tests.conftest import free_port
    from tipd.events import tail

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    heard: list[bool] = []
    lines = tail(endpoint, [], seconds=1.0, on_quiet=lambda: heard.append(True), quiet_s=0.3)
    assert list(lines) == []
    assert heard == [True]
    out = _run(tipd_exe, "events", "--endpoint", endpoint, "--seconds", "0.5")
    assert out.returncode == 0 and f"listening to tipd's events at {endpoint}" in out.stderr
