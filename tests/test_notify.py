"""Which events call for a webhook message, and that each condition is said once."""

from __future__ import annotations

from tipd.web.metrics import Metrics, action_outcome
from tipd.web.notify import Alerts


def _health(mic: str = "*", **fields: object) -> dict[str, object]:
    return {"microscope": mic, "uptime_s": 1.0, "blind": {}, "needs_operator": [], **fields}


def test_each_condition_is_said_once_and_again_only_after_it_ended() -> None:
    a = Alerts()
    assert a.on_event("health", _health()) == []
    first = a.on_event("health", _health("stm1", needs_operator=["stm1"]))  # the immediate one
    assert len(first) == 1 and "stm1 needs an operator" in first[0]
    assert a.on_event("health", _health(needs_operator=["stm1"])) == []  # the periodic one
    assert a.on_event("health", _health()) == []  # reset by an operator: ended
    assert len(a.on_event("health", _health(needs_operator=["stm1"]))) == 1  # begun anew
    blind = a.on_event("health", _health(needs_operator=["stm1"], blind={"stm2": 3}))
    assert blind == [blind[0]] and "blind on stm2: 3 frames" in blind[0]
    stopped = a.on_event(
        "health", _health(needs_operator=["stm1"], blind={"stm2": 4}, stopped=True)
    )
    assert stopped == ["tipd: the stop file is present; nothing is sent to any microscope."]


def test_a_silent_controller_is_said_at_most_once_per_repeat() -> None:
    a = Alerts(repeat_s=600.0)

    def failed(t: float, detail: str = "no reply from tcp://x after 3 tries of 5 s") -> dict:
        return {
            "microscope": "stm1",
            "command": {"action": "pulse"},
            "reply": {"status": "failed", "detail": detail, "t_done": t},
        }

    assert len(a.on_event("action", failed(1000.0))) == 1
    assert a.on_event("action", failed(1300.0)) == []
    assert len(a.on_event("action", failed(1601.0))) == 1
    assert a.on_event("action", failed(5000.0, "the bias amplifier tripped")) == []  # it answered


def test_metrics_count_outcomes_by_what_became_of_each_command() -> None:
    def action(status: str | None, detail: str = "") -> dict:
        reply = None if status is None else {"status": status, "detail": detail, "t_done": 1.0}
        return {"microscope": "stm1", "command": {"action": "pulse"}, "reply": reply}

    assert action_outcome(action(None)) == "sent"
    assert action_outcome(action("done")) == "done"
    assert action_outcome(action("rejected", "refused by the safety gate: cooldown")) == "refused"
    assert action_outcome(action("rejected", "advisory mode: decided, not sent")) == "advisory"
    assert action_outcome(action("rejected", "bias beyond the controller's limit")) == "rejected"
    m = Metrics()
    m.observe("action", action("rejected", "refused by the safety gate: cooldown"))
    m.observe("health", _health(needs_operator=["stm1"], held=["stm2"]))
    m.observe("health", _health(held=["stm2"]))
    text = m.text().decode()
    assert 'tipd_refusals_total{microscope="stm1"} 1.0' in text
    assert 'tipd_needs_operator{microscope="stm1"} 0.0' in text  # cleared
    assert 'tipd_held{microscope="stm2"} 1.0' in text
