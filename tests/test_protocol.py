"""Wire protocol v1: round trips, precise errors, and garbage that may only raise ProtocolError."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tipd.protocol import (
    ActionEvent,
    Command,
    ErrorEvent,
    FrameHeader,
    HealthEvent,
    ProtocolError,
    Reply,
    StateEvent,
    decode_command,
    decode_event,
    decode_frame,
    decode_reply,
    encode_command,
    encode_event,
    encode_frame,
    encode_reply,
)


def header(**changes: object) -> FrameHeader:
    base: dict[str, object] = dict(
        microscope="stm1",
        frame_id="f-1",
        seq=3,
        t_acquired=1.7e9,
        shape=(8, 6),
        n_rows=8,
        scan_size_nm=(30.0, 30.0),
        pixel_count=(6, 8),
        surface="au111",
        bias_V=0.5,
        setpoint_A=1e-10,
        position_nm=(10.0, -5.0),
    )
    base.update(changes)
    return FrameHeader(**base)  # type: ignore[arg-type]


def test_frame_round_trip_keeps_every_value() -> None:
    data = np.arange(48, dtype=float).reshape(8, 6) * 1e-10
    parts = encode_frame(header(), data)
    assert parts[0] == b"frame.stm1"
    kind, h, array = decode_frame(parts)
    assert kind == "frame" and h == header()
    np.testing.assert_array_equal(array, data.astype("<f4"))


def test_line_chunk_round_trip_and_topic() -> None:
    h = header(first_row=2, n_rows=3)
    parts = encode_frame(h, np.ones((3, 6)))
    assert parts[0] == b"lines.stm1"
    kind, back, array = decode_frame(parts)
    assert kind == "lines" and back.first_row == 2 and array.shape == (3, 6)


def test_float64_payload() -> None:
    h = header(dtype="<f8")
    _, _, array = decode_frame(encode_frame(h, np.full((8, 6), 0.25)))
    assert array.dtype == np.dtype("<f8") and array[0, 0] == 0.25


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda p: p[:2], "expected 3 parts"),
        (lambda p: [b"frame.stm2", p[1], p[2]], "expected 'stm2' (from topic)"),
        (lambda p: [b"frames.stm1", p[1], p[2]], "topic: expected 'frame.<microscope>'"),
        (lambda p: [p[0], p[1], p[2][:-4]], "payload: expected 192 bytes"),
        (lambda p: [p[0], p[1] + b"x", p[2]], "header: expected a JSON object, got invalid JSON"),
        (lambda p: [p[0], b"\xff\xfe", p[2]], "expected UTF-8 JSON"),
        (lambda p: [p[0], p[1].replace(b'"seq":3', b'"seq":-3'), p[2]], "header.seq"),
        (lambda p: [p[0], p[1].replace(b'"bias_V":0.5', b'"bias_V":NaN'), p[2]], "non-finite"),
        (lambda p: [p[0], p[1].replace(b'"bias_V":0.5', b'"bias_V":1e999'), p[2]], "header.bias_V"),
        (lambda p: [p[0], p[1].replace(b'"dtype":"<f4"', b'"dtype":"<i4"'), p[2]], "header.dtype"),
        (lambda p: [p[0], p[1].replace(b'"v":1', b'"v":2'), p[2]], "header.v"),
        (
            lambda p: [p[0], p[1].replace(b'"pixel_count":[6,8]', b'"pixel_count":[8,6]'), p[2]],
            "pixel_count: expected [cols, rows] = [6, 8]",
        ),
        (
            lambda p: [p[0], p[1].replace(b'"shape":[8,6]', b'"shape":[100000,100000]'), p[2]],
            "header.shape.0",
        ),
        (
            lambda p: [p[0], p[1].replace(b'"shape":[8,6]', b'"shape":[0,6]'), p[2]],
            "header.shape.0",
        ),
        (lambda p: [p[0], p[1].replace(b'"unit":"m"', b'"unit":"A"'), p[2]], "unit: expected 'm'"),
        (lambda p: [p[0], p[1][:-1] + b',"extra":1}', p[2]], "header.extra"),
        (lambda p: [p[0], p[1], "text"], "payload: expected bytes"),
    ],
)
def test_malformed_frames_say_what_is_wrong(mutate: object, needle: str) -> None:
    parts = encode_frame(header(), np.zeros((8, 6)))
    with pytest.raises(ProtocolError) as err:
        decode_frame(mutate(parts))  # type: ignore[operator]
    assert needle in str(err.value)


def test_whole_frame_topic_needs_every_row() -> None:
    parts = encode_frame(header(first_row=2, n_rows=3), np.zeros((3, 6)))
    with pytest.raises(ProtocolError, match="expected a whole frame"):
        decode_frame([b"frame.stm1", parts[1], parts[2]])


def test_chunk_beyond_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="first_row \\+ n_rows"):
        header(first_row=6, n_rows=3)


def test_command_round_trip_and_params_follow_action() -> None:
    c = Command(
        microscope="stm1",
        action="crash",
        params={"depth_nm": 1.5, "bias_V": 0.02},
        reason={"state": "double_tip", "confidence": 0.95, "frame_id": "f-1"},
    )
    back = decode_command(encode_command(c))
    assert back == c and back.id == c.id
    with pytest.raises(ProtocolError, match=r"params\.width_s: Field required for action 'pulse'"):
        decode_command(
            [
                json.dumps(
                    {"v": 1, "microscope": "stm1", "action": "pulse", "params": {"bias_V": 2.0}}
                ).encode()
            ]
        )
    with pytest.raises(ProtocolError, match=r"command\.action"):
        decode_command(
            [json.dumps({"v": 1, "microscope": "stm1", "action": "explode", "params": {}}).encode()]
        )
    with pytest.raises(ProtocolError, match=r"params\.width_s"):
        decode_command(
            [
                json.dumps(
                    {
                        "v": 1,
                        "microscope": "stm1",
                        "action": "pulse",
                        "params": {"bias_V": 2.0, "width_s": -1},
                    }
                ).encode()
            ]
        )


def test_reply_round_trip() -> None:
    r = Reply(id="abc", status="rejected", detail="bias beyond limit", t_done=1.7e9)
    assert decode_reply(encode_reply(r)) == r
    with pytest.raises(ProtocolError, match=r"reply\.status"):
        decode_reply([b'{"v":1,"id":"abc","status":"maybe","t_done":1}'])


def test_version_and_numbers_must_be_what_the_protocol_says() -> None:
    """``v`` is required and is the integer 1; numbers are JSON numbers, never strings or
    booleans; counts stay within what the journal stores."""
    data = np.zeros((8, 6), dtype="<f4")
    good = json.loads(encode_frame(header(), data)[1])

    def message(**changes: object) -> list[bytes]:
        h = {k: v for k, v in {**good, **changes}.items() if v is not _DROP}
        return [b"frame.stm1", json.dumps(h).encode(), data.tobytes()]

    for changes, needle in [
        ({"v": _DROP}, "header.v: expected the integer 1, got nothing"),
        ({"v": True}, "header.v: expected the integer 1, got True"),
        ({"v": "1"}, "header.v: expected the integer 1, got '1'"),
        ({"v": 2}, "header.v: expected the integer 1, got 2"),
        ({"bias_V": "1.5"}, "header.bias_V: expected a number, got str"),
        ({"bias_V": True}, "header.bias_V: expected a number, got bool"),
        ({"seq": 2**63}, "header.seq: Input should be less than or equal to"),
        ({"seq": 10**30}, "header.seq"),
        ({"seq": 3.0}, "header.seq: expected an integer, got float"),
        ({"seq": "7"}, "header.seq: expected an integer, got str"),
    ]:
        with pytest.raises(ProtocolError, match=re.escape(needle)):
            decode_frame(message(**changes))
    assert decode_frame(message(seq=2**63 - 1))[1].seq == 2**63 - 1
    assert decode_frame(message(bias_V=2))[1].bias_V == 2.0  # an integer is a number too


_DROP = object()


def test_events_round_trip_with_topics() -> None:
    c = Command(microscope="stm1", action="move", params={"dx_nm": 100.0, "dy_nm": 0.0})
    events = [
        StateEvent(
            microscope="stm1",
            frame_id="f",
            seq=1,
            rows_seen=64,
            members={"m0": {"double_tip": 0.9}},
            voted={"double_tip": 0.9},
            state="double_tip",
            desirable=False,
            latency_ms=3.2,
        ),
        ActionEvent(microscope="stm1", command=c),
        ErrorEvent(microscope="stm1", what="protocol", detail="payload: expected 4 bytes"),
        HealthEvent(
            microscope="*",
            uptime_s=5.0,
            provider="CPUExecutionProvider",
            queue_depth=0,
            counters={"frames": 3},
        ),
    ]
    topics = [b"state.stm1", b"action.stm1", b"error.stm1", b"health"]
    for event, topic in zip(events, topics, strict=True):
        parts = encode_event(event)
        assert parts[0] == topic
        assert decode_event(parts) == event
    with pytest.raises(ProtocolError, match="expected 'stm2' \\(from topic\\)"):
        decode_event([b"state.stm2", encode_event(events[0])[1]])


# --------------------------------------------------------------------------- property tests

GARBAGE = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def _valid_header_dict() -> dict[str, object]:
    return json.loads(header().model_dump_json())  # type: ignore[no-any-return]


@st.composite
def mutated_headers(draw: st.DrawFn) -> bytes:
    """A valid header with some fields replaced, deleted, or added with arbitrary JSON values."""
    h = _valid_header_dict()
    keys = sorted(h)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "delete", "add", "nan"]))
        key = draw(st.sampled_from(keys))
        if op == "replace":
            h[key] = draw(json_values)
        elif op == "delete":
            h.pop(key, None)
        elif op == "nan":
            h[key] = draw(st.sampled_from([math.nan, math.inf, -math.inf, 1e308 * 10]))
        else:
            h[draw(st.text(max_size=10))] = draw(json_values)
    return json.dumps(h, allow_nan=True).encode()


@GARBAGE
@given(parts=st.lists(st.binary(max_size=64), max_size=5))
def test_random_bytes_only_raise_protocol_error(parts: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(parts)


@GARBAGE
@given(
    raw=mutated_headers(),
    payload=st.binary(max_size=400),
    topic=st.sampled_from(
        [b"frame.stm1", b"lines.stm1", b"frame.", b"frame.stm1.x", b"\xff", b"", b"frame.stm 1"]
    ),
)
def test_mutated_headers_only_raise_protocol_error(
    raw: bytes, payload: bytes, topic: bytes
) -> None:
    try:
        _, h, array = decode_frame([topic, raw, payload])
    except ProtocolError:
        return
    # whatever got through must be exactly consistent
    assert array.shape == (h.n_rows, h.shape[1])
    assert len(payload) == h.payload_bytes
    assert all(math.isfinite(v) for v in (h.t_acquired, h.bias_V, h.setpoint_A, h.angle_deg))


@GARBAGE
@given(
    rows=st.integers(-5, 10_000_000),
    cols=st.integers(-5, 10_000_000),
    first=st.integers(-3, 100),
    n=st.integers(-3, 100),
    cut=st.integers(-8, 8),
)
def test_absurd_shapes_and_truncated_payloads(
    rows: int, cols: int, first: int, n: int, cut: int
) -> None:
    h = _valid_header_dict()
    h.update(shape=[rows, cols], pixel_count=[cols, rows], first_row=first, n_rows=n)
    size = max(0, min(n, 64)) * max(0, min(cols, 64)) * 4 + cut
    try:
        _, back, array = decode_frame([b"lines.stm1", json.dumps(h).encode(), b"\0" * max(0, size)])
    except ProtocolError:
        return
    assert 1 <= back.shape[0] <= 4096 and 1 <= back.shape[1] <= 4096
    assert array.nbytes == back.payload_bytes


@GARBAGE
@given(body=json_values, extra=st.binary(max_size=30))
def test_commands_and_replies_from_garbage(body: object, extra: bytes) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    for decode in (decode_command, decode_reply):
        for parts in ([raw], [extra], [raw, extra], []):
            try:
                decode(parts)
            except ProtocolError:
                continue
    for parts in ([b"state.stm1", raw], [b"health", raw], [extra, raw]):
        try:
            decode_event(parts)
        except ProtocolError:
            continue


def test_deeply_nested_json_is_a_protocol_error() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ProtocolError):
        decode_command([raw])
    with pytest.raises(ProtocolError, match="at most"):
        decode_command([b'{"a":"' + b"x" * 70_000 + b'"}'])
