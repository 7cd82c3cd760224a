"""Wire protocol v1: one typed model per ZeroMQ message, and strict encode/decode.

Every message is JSON (UTF-8) plus, for frames, one raw array part. Everything in a message is
validated before any array is built; whatever is wrong comes out as one :class:`ProtocolError`
whose message names the field, what was expected and what was received. Nothing is ever
unpickled.

Messages (see DESIGN.md, "Wire protocol v1"):

========================  =======================================  ===========================
socket                    parts                                    model
========================  =======================================  ===========================
frames in (PUB → SUB)     ``[topic, header, payload]``             :class:`FrameHeader`
commands (DEALER→ROUTER)  ``[header]``                             :class:`Command`
replies (ROUTER→DEALER)   ``[header]``                             :class:`Reply`
events (PUB → SUB)        ``[topic, body]``                        :class:`StateEvent`, ...
========================  =======================================  ===========================
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

VERSION = 1
MAX_SIDE = 4096  #: largest frame side in pixels accepted on the wire
MAX_HEADER_BYTES = 64 * 1024  #: a JSON header or body larger than this is refused unparsed
MAX_COUNT = 2**63 - 1  #: largest sequence number or row index (what SQLite stores)
MICROSCOPE_RE = r"^[A-Za-z0-9_-]{1,64}$"
DTYPES: dict[str, np.dtype[Any]] = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}

FRAME_KINDS = ("frame", "lines")
EVENT_KINDS = ("state", "action", "error", "health", "operator")


class ProtocolError(ValueError):
    """A message that does not follow wire protocol v1; the text says field, expected and got."""


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Strict(BaseModel):
    """Base of every wire model: unknown keys refused, no NaN/inf, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


def _number(value: object) -> object:
    """A JSON number, not a string of digits or a boolean (which lax validation would take)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__} {_short(value)}")
    return value


def _integer(value: object) -> object:
    """A JSON integer, not a float, string or boolean."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {type(value).__name__} {_short(value)}")
    return value


Microscope = Annotated[str, Field(pattern=MICROSCOPE_RE)]
Finite = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False, strict=False)]
Positive = Annotated[
    float, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False, strict=False)
]
Side = Annotated[int, BeforeValidator(_integer), Field(ge=1, le=MAX_SIDE)]
Count = Annotated[int, BeforeValidator(_integer), Field(ge=0, le=MAX_COUNT)]


# --------------------------------------------------------------------------- frames in


class FrameHeader(_Strict):
    """Header of a whole frame (topic ``frame.<mic>``) or of a chunk of lines (``lines.<mic>``).

    ``shape`` is the whole frame ``[rows, cols]``; the payload holds rows
    ``first_row .. first_row + n_rows - 1`` as a C-order little-endian array of shape
    ``(n_rows, cols)``. ``pixel_count`` is ``[cols, rows]`` as scan software reports it and must
    agree with ``shape``. Heights are in metres (``unit="m"``, channel ``z``) or currents in
    amperes (``unit="A"``, channel ``current``).
    """

    v: Literal[1] = 1
    microscope: Microscope
    frame_id: Annotated[str, Field(min_length=1, max_length=128)]
    seq: Count
    t_acquired: Positive  #: unix time of the last line in the message, s
    channel: Literal["z", "current"] = "z"
    direction: Literal["forward", "backward"] = "forward"
    shape: tuple[Side, Side]  #: whole frame [rows, cols]
    first_row: Count = 0
    n_rows: Side
    dtype: Literal["<f4", "<f8"] = "<f4"
    unit: Literal["m", "A"] = "m"
    scan_size_nm: tuple[Positive, Positive]  #: [width, height] in nm
    pixel_count: tuple[Side, Side]  #: [cols, rows]
    angle_deg: Finite = 0.0
    bias_V: Finite = 0.0
    setpoint_A: Finite = 0.0
    surface: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")] | None = None
    position_nm: tuple[Finite, Finite] = (0.0, 0.0)  #: frame centre [x, y], nm

    @model_validator(mode="after")
    def _consistent(self) -> FrameHeader:
        rows, cols = self.shape
        if self.first_row + self.n_rows > rows:
            raise ValueError(
                f"first_row + n_rows: expected <= shape rows {rows}, "
                f"got {self.first_row} + {self.n_rows}"
            )
        if tuple(self.pixel_count) != (cols, rows):
            raise ValueError(
                f"pixel_count: expected [cols, rows] = [{cols}, {rows}], "
                f"got {list(self.pixel_count)}"
            )
        if (self.channel == "z") != (self.unit == "m"):
            raise ValueError(
                f"unit: expected 'm' for channel z and 'A' for current, "
                f"got channel {self.channel!r} with unit {self.unit!r}"
            )
        return self

    @property
    def is_whole(self) -> bool:
        """True when this message carries every row of the frame."""
        return self.first_row == 0 and self.n_rows == self.shape[0]

    @property
    def payload_bytes(self) -> int:
        """Exact payload length this header promises, bytes."""
        return self.n_rows * self.shape[1] * DTYPES[self.dtype].itemsize


# --------------------------------------------------------------------------- commands


class PulseParams(_Strict):
    """Bias pulse: ``bias_V`` (V, sign kept) for ``width_s`` (s)."""

    bias_V: Finite
    width_s: Positive


class CrashParams(_Strict):
    """Controlled dip of the tip into the sample by ``depth_nm`` (nm, > 0) at ``bias_V`` (V)."""

    depth_nm: Positive
    bias_V: Finite


class MoveParams(_Strict):
    """Move the scan frame by ``dx_nm, dy_nm`` (nm) to a fresh area."""

    dx_nm: Finite
    dy_nm: Finite


class NoParams(_Strict):
    """``rescan`` and ``withdraw`` take no parameters."""


Action = Literal["pulse", "crash", "move", "rescan", "withdraw"]
#: the actions that change the tip or the sample (a withdrawn tip takes none of them; the safety
#: budgets and cooldown count them)
CONDITIONING = ("pulse", "crash")
PARAMS_FOR: dict[str, type[_Strict]] = {
    "pulse": PulseParams,
    "crash": CrashParams,
    "move": MoveParams,
    "rescan": NoParams,
    "withdraw": NoParams,
}


class Reason(_Strict):
    """Why tipd sends a command: the state it saw, how sure it was, and on which frame."""

    state: Annotated[str, Field(min_length=1, max_length=64)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0, strict=False)]
    frame_id: Annotated[str, Field(max_length=128)] = ""


class Command(_Strict):
    """A conditioning command to the controller. A resent command keeps its ``id``."""

    v: Literal[1] = 1
    id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default_factory=lambda: str(uuid.uuid4())
    )
    microscope: Microscope
    action: Action
    params: PulseParams | CrashParams | MoveParams | NoParams
    reason: Reason | None = None

    @model_validator(mode="before")
    @classmethod
    def _params_for_action(cls, data: Any) -> Any:
        # Pick the params model from the action, so that the error names the right fields.
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            model = PARAMS_FOR.get(str(data.get("action")))
            if model is not None:
                data = dict(data)
                try:
                    data["params"] = model.model_validate(data["params"], strict=False)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    loc = ".".join(str(p) for p in first["loc"])
                    raise ValueError(
                        f"params.{loc}: {first['msg']} for action {data['action']!r}, "
                        f"got {_short(data['params'])}"
                    ) from None
        return data

    @model_validator(mode="after")
    def _action_matches_params(self) -> Command:
        expected = PARAMS_FOR[self.action]
        if type(self.params) is not expected:
            raise ValueError(
                f"params: expected {expected.__name__} for action {self.action!r}, "
                f"got {type(self.params).__name__}"
            )
        return self


class Reply(_Strict):
    """The controller's answer to one command ``id``."""

    v: Literal[1] = 1
    id: Annotated[str, Field(min_length=1, max_length=64)]
    status: Literal["done", "rejected", "failed"]
    detail: Annotated[str, Field(max_length=4096)] = ""
    t_done: Positive


# --------------------------------------------------------------------------- events


class _Event(_Strict):
    v: Literal[1] = 1
    microscope: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]{1,64}|\*)$")]
    t: Positive = Field(default_factory=time.time)


#: the daemon's states, as :mod:`tipd.condition` names them
DaemonStateName = Literal["starting", "serving", "degraded", "held", "blind", "stopping"]


class EvidenceItem(_Strict):
    """One source's say about the tip in a decision (:class:`tipd.evidence.Evidence`):
    ``source`` (nets, echo, sharpness, lines, physics, memory), the ``fault`` it speaks of,
    its calibrated ``probability``, a ``reason`` a microscopist can check, and whether it
    could tell at all (``certain``)."""

    source: Annotated[str, Field(min_length=1, max_length=32)]
    fault: Annotated[str, Field(min_length=1, max_length=64)]
    probability: Annotated[float, Field(ge=0, le=1, strict=False)]
    reason: Annotated[str, Field(max_length=512)]
    certain: bool = True


class StateEvent(_Event):
    """Decision on one frame or rolling window. Confidences are 0–1 per class."""

    frame_id: str
    seq: Annotated[int, Field(ge=0)]
    rows_seen: Annotated[int, Field(ge=0)]
    members: dict[str, dict[str, Annotated[float, Field(ge=0, le=1, strict=False)]]]
    voted: dict[str, Annotated[float, Field(ge=0, le=1, strict=False)]]
    state: str
    desirable: bool
    latency_ms: Annotated[float, Field(ge=0, strict=False)]
    #: frame rows that start a horizontal discontinuity (a tip change) in what was classified
    line_jumps: list[Annotated[int, Field(ge=0)]] = []
    #: confidence 0–1 of ``state`` (for ``unfamiliar``: 1 − familiarity)
    confidence: Annotated[float, Field(ge=0, le=1, strict=False)] = 0.0
    #: 0–1, how much the frame resembles the model's training frames (None: not measured)
    familiarity: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None
    #: the scan lines' tip-change evidence 0–1 (:mod:`tipd.scanlines`), at frame row
    #: ``lines_row``
    lines_tip_change: Annotated[float, Field(ge=0, le=1, strict=False)] = 0.0
    lines_row: Annotated[int, Field(ge=0)] | None = None
    #: the confidence 0–1 that the frame is not good, and that the tip changed during it
    bad: Annotated[float, Field(ge=0, le=1, strict=False)] = 0.0
    tip_change: Annotated[float, Field(ge=0, le=1, strict=False)] = 0.0
    #: what was classified: a whole ``frame``, or a ``window`` of its newest lines mid-frame
    kind: Literal["frame", "window"] = "frame"
    #: every source's say behind the decision (nets, the tip's physics, the sample's memory)
    evidence: list[EvidenceItem] = []


class ActionEvent(_Event):
    """A command sent (``reply`` None) and, in a later event, its reply."""

    command: Command
    reply: Reply | None = None


class ErrorEvent(_Event):
    """Something rejected: ``what`` (a short kind, e.g. ``protocol``) and ``detail`` (why)."""

    what: Annotated[str, Field(min_length=1, max_length=64)]
    detail: Annotated[str, Field(max_length=4096)]
    frame_id: str | None = None


class HealthEvent(_Event):
    """Periodic health: uptime (s), inference provider, queue depth, counters."""

    uptime_s: Annotated[float, Field(ge=0, strict=False)]
    provider: str
    queue_depth: Annotated[int, Field(ge=0)]
    counters: dict[str, Annotated[int, Field(ge=0)]]
    #: microscopes whose last whole frames were all unfamiliar (at least ``blind_after`` in a
    #: row): how many. tipd sees nothing it knows there and does nothing to their tips.
    blind: dict[str, Annotated[int, Field(ge=0)]] = {}
    #: microscopes whose safety gate waits for an operator (``tipd reset``) ...
    needs_operator: list[str] = []
    #: ... and those an operator put on hold (``tipd hold``)
    held: list[str] = []
    #: the stop file exists: nothing is sent to any microscope
    stopped: bool = False
    #: tipd decides and reports but sends nothing (None: not said)
    advisory: bool | None = None
    #: the daemon's state (:mod:`tipd.condition`: starting, serving, degraded, held, blind,
    #: stopping; None: not said) and one line per condition behind it
    state: DaemonStateName | None = None
    why: list[Annotated[str, Field(max_length=512)]] = []


class OperatorEvent(_Event):
    """An operator command a running daemon carried out (``tipd hold`` …): what, by whom."""

    op: Literal["hold", "release", "reset", "reference"]
    who: Annotated[str, Field(min_length=1, max_length=64)]
    detail: Annotated[str, Field(max_length=4096)] = ""


Event = StateEvent | ActionEvent | ErrorEvent | HealthEvent | OperatorEvent
EVENT_MODELS: dict[str, type[_Event]] = {
    "state": StateEvent,
    "action": ActionEvent,
    "error": ErrorEvent,
    "health": HealthEvent,
    "operator": OperatorEvent,
}


# --------------------------------------------------------------------------- operator


class OperatorRequest(_Strict):
    """An operator's command to a running daemon (``tipd hold stm1`` …), on its operator
    endpoint (REQ → ROUTER): ``hold`` halts every command to ``microscope`` but withdraw,
    ``release`` ends a hold, ``reset`` clears ``needs_operator`` and the fruitless run,
    ``reference`` says frame ``frame_id`` shows a good tip (its area is judged against it
    from now on, :mod:`tipd.physics.memory`), ``status`` asks why the gates refuse
    (``microscope`` None: every microscope)."""

    v: Literal[1] = 1
    op: Literal["hold", "release", "reset", "status", "reference"]
    microscope: Microscope | None = None
    who: Annotated[str, Field(min_length=1, max_length=64)] = "operator"
    #: ``reference``: the frame that shows a good tip (None: the microscope's latest)
    frame_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class OperatorReply(_Strict):
    """The daemon's answer: ``ok``, ``detail`` in words, and per microscope its gate's status
    (:meth:`tipd.safety.SafetyGate.status`)."""

    v: Literal[1] = 1
    ok: bool
    detail: Annotated[str, Field(max_length=4096)] = ""
    gates: dict[str, dict[str, Any]] = {}
    #: the daemon's state and why (as in :class:`HealthEvent`), on a ``status`` request
    state: DaemonStateName | None = None
    why: list[Annotated[str, Field(max_length=512)]] = []


_EVENT_KIND = {model: kind for kind, model in EVENT_MODELS.items()}

# --------------------------------------------------------------------------- encode / decode

M = TypeVar("M", bound=BaseModel)


def _reject_constant(token: str) -> float:
    raise ValueError(f"non-finite number {token} is not allowed")


def _parse_json(raw: bytes, what: str) -> dict[str, Any]:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what}: expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"{what}: expected at most {MAX_HEADER_BYTES} bytes, got {len(raw)}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what}: expected UTF-8 JSON, got undecodable bytes ({exc})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what}: expected a JSON object, got invalid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _validate(model: type[M], obj: dict[str, Any], what: str) -> M:
    version = obj.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
        got = "nothing" if "v" not in obj else _short(version)
        raise ProtocolError(f"{what}.v: expected the integer {VERSION}, got {got}")
    try:
        return model.model_validate(obj, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = "".join(f".{p}" for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        extra = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        got = f", got {_short(first.get('input'))}" if "got" not in msg else ""
        raise ProtocolError(f"{what}{loc}: {msg}{got}{extra}") from None
    except (RecursionError, OverflowError) as exc:  # pathological nesting or numbers
        raise ProtocolError(f"{what}: could not be validated ({exc})") from None


def _expect_parts(parts: object, n: int, what: str, layout: str) -> None:
    """Raise :class:`ProtocolError` unless ``parts`` is a list (or tuple) of ``n`` parts."""
    if not isinstance(parts, list | tuple) or len(parts) != n:
        got = len(parts) if isinstance(parts, list | tuple) else type(parts).__name__
        raise ProtocolError(f"{what}: expected {n} part{'s' * (n > 1)} {layout}, got {got}")


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode("utf-8")


def _split_topic(raw: bytes, kinds: tuple[str, ...]) -> tuple[str, str]:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError(f"topic: expected bytes, got {type(raw).__name__}")
    try:
        topic = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"topic: expected ASCII, got {_short(bytes(raw))}") from None
    kind, _, rest = topic.partition(".")
    if kind not in kinds or not rest:
        expected = " or ".join(f"'{k}.<microscope>'" for k in kinds)
        raise ProtocolError(f"topic: expected {expected}, got {_short(topic)}")
    return kind, rest


def encode_frame(header: FrameHeader, data: np.ndarray) -> list[bytes]:
    """``[topic, header, payload]`` for a whole frame or a chunk of lines.

    ``data`` has shape ``(header.n_rows, header.shape[1])``; it is cast to ``header.dtype``.
    """
    expected = (header.n_rows, header.shape[1])
    if data.shape != expected:
        raise ProtocolError(f"payload: expected array of shape {expected}, got {data.shape}")
    kind = "frame" if header.is_whole else "lines"
    payload = np.ascontiguousarray(data, dtype=DTYPES[header.dtype]).tobytes()
    return [f"{kind}.{header.microscope}".encode(), _dump(header), payload]


def decode_frame(parts: list[bytes]) -> tuple[str, FrameHeader, np.ndarray]:
    """Validate ``[topic, header, payload]`` and return ``(kind, header, array)``.

    ``kind`` is ``"frame"`` or ``"lines"``; the array has shape ``(n_rows, cols)`` and the
    header's dtype (a read-only view of the payload). Raises :class:`ProtocolError`.
    """
    _expect_parts(parts, 3, "message", "[topic, header, payload]")
    kind, microscope = _split_topic(parts[0], FRAME_KINDS)
    header = _validate(FrameHeader, _parse_json(parts[1], "header"), "header")
    if header.microscope != microscope:
        raise ProtocolError(
            f"header.microscope: expected {microscope!r} (from topic), got {header.microscope!r}"
        )
    if kind == "frame" and not header.is_whole:
        raise ProtocolError(
            f"header.n_rows: expected a whole frame (first_row 0, n_rows {header.shape[0]}) "
            f"on topic 'frame.', got first_row {header.first_row}, n_rows {header.n_rows}"
        )
    payload = parts[2]
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ProtocolError(f"payload: expected bytes, got {type(payload).__name__}")
    if len(payload) != header.payload_bytes:
        raise ProtocolError(
            f"payload: expected {header.payload_bytes} bytes "
            f"({header.n_rows}×{header.shape[1]}×{DTYPES[header.dtype].itemsize}), "
            f"got {len(payload)}"
        )
    array = np.frombuffer(payload, dtype=DTYPES[header.dtype]).reshape(
        header.n_rows, header.shape[1]
    )
    return kind, header, array


def encode_command(command: Command) -> list[bytes]:
    """``[header]`` as a DEALER sends it."""
    return [_dump(command)]


def decode_command(parts: list[bytes]) -> Command:
    """Validate ``[header]`` into a :class:`Command`. Raises :class:`ProtocolError`."""
    _expect_parts(parts, 1, "command", "[header]")
    return _validate(Command, _parse_json(parts[0], "command"), "command")


def encode_reply(reply: Reply) -> list[bytes]:
    """``[header]`` as the controller's ROUTER sends it (after the peer identity)."""
    return [_dump(reply)]


def decode_reply(parts: list[bytes]) -> Reply:
    """Validate ``[header]`` into a :class:`Reply`. Raises :class:`ProtocolError`."""
    _expect_parts(parts, 1, "reply", "[header]")
    return _validate(Reply, _parse_json(parts[0], "reply"), "reply")


def encode_operator(message: OperatorRequest | OperatorReply) -> list[bytes]:
    """``[body]`` of an operator request or reply."""
    return [_dump(message)]


def decode_operator_request(parts: list[bytes]) -> OperatorRequest:
    """Validate ``[body]`` into an :class:`OperatorRequest`. Raises :class:`ProtocolError`."""
    _expect_parts(parts, 1, "request", "[body]")
    return _validate(OperatorRequest, _parse_json(parts[0], "request"), "request")


def decode_operator_reply(parts: list[bytes]) -> OperatorReply:
    """Validate ``[body]`` into an :class:`OperatorReply`. Raises :class:`ProtocolError`."""
    _expect_parts(parts, 1, "reply", "[body]")
    return _validate(OperatorReply, _parse_json(parts[0], "reply"), "reply")


def event_topic(event: _Event) -> str:
    """``state.<mic>``, ``action.<mic>``, ``error.<mic>`` or ``health``."""
    kind = _EVENT_KIND[type(event)]
    return kind if kind == "health" else f"{kind}.{event.microscope}"


def encode_event(event: _Event) -> list[bytes]:
    """``[topic, body]`` for the events PUB socket."""
    return [event_topic(event).encode(), _dump(event)]


def decode_event(parts: list[bytes]) -> _Event:
    """Validate ``[topic, body]`` into the event model its topic names."""
    _expect_parts(parts, 2, "event", "[topic, body]")
    raw = parts[0]
    if isinstance(raw, bytes) and raw == b"health":
        kind, microscope = "health", None
    else:
        kind, microscope = _split_topic(raw, EVENT_KINDS)
    event = _validate(EVENT_MODELS[kind], _parse_json(parts[1], "body"), "body")
    if microscope is not None and event.microscope != microscope:
        raise ProtocolError(
            f"body.microscope: expected {microscope!r} (from topic), got {event.microscope!r}"
        )
    return event


def check_finite_array(array: np.ndarray) -> None:
    """Raise :class:`ProtocolError` unless at least one value is finite.

    Unscanned lines are NaN by convention, so NaN rows alone are allowed; a payload with no
    finite value at all, or with any infinity, is refused.
    """
    if np.isinf(array).any():
        raise ProtocolError("payload: expected finite values or NaN, got infinity")
    if not np.isfinite(array).any():
        raise ProtocolError("payload: expected at least one finite value, got none")
