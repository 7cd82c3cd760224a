"""A command id is executed once, across a crash of the controller that keeps the record."""

from __future__ import annotations

from pathlib import Path

from tipd.once import INTERRUPTED, RepliesById
from tipd.protocol import Reply


def test_replies_survive_in_their_file_and_begun_ids_are_never_redone(tmp_path: Path) -> None:
    path = tmp_path / "executed.jsonl"
    once = RepliesById(path=path)
    done = Reply(id="a", status="done", detail="pulse 2.5 V", t_done=1.7e9)
    once.begin("a")
    once.remember(done)
    once.begin("b")  # the controller dies while carrying b out
    once.close()
    with path.open("a") as fh:
        fh.write('{"begin": true, "id": "c"')  # torn by the kill
    again = RepliesById(path=path)
    assert again.get("a") == done
    b = again.get("b")
    assert b is not None and b.status == "failed" and b.detail == INTERRUPTED
    assert again.get("c") is None  # never fully begun: it was not carried out
    assert len(again) == 2


def test_without_a_file_the_memory_is_bounded(tmp_path: Path) -> None:
    once = RepliesById(limit=3)
    for k in range(5):
        once.begin(str(k))
        once.remember(Reply(id=str(k), status="done", detail="", t_done=1.0))
    assert len(once) == 3 and once.get("0") is None and once.get("4") is not None
    assert list(tmp_path.iterdir()) == []
