"""Configuration: ``config/tipd.toml`` (or ``--config FILE``) with ``TIPD_*`` environment
overrides (``TIPD_ADVISORY=1``, ``TIPD_SAFETY__MAX_BIAS_V=5``: double underscore for nesting).
Every key is documented here and in ``config/tipd.toml``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tipd.errors import UserError
from tipd.safety import Limits


def state_dir() -> Path:
    """The folder tipd keeps its journal (and a bridge its executed ids) in, when the settings
    name no other: systemd's ``$STATE_DIRECTORY`` (``StateDirectory=tipd``: /var/lib/tipd),
    else ``$XDG_STATE_HOME/tipd``, else ``~/.local/state/tipd``. The daemon, ``tipd journal`` and
    ``tipd events`` find the journal here (``make demo`` keeps its own, in
    ``demo-out/state``)."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "tipd"


def default_journal() -> Path:
    """``journal.sqlite`` in :func:`state_dir`."""
    return state_dir() / "journal.sqlite"


class Endpoints(BaseModel):
    """ZeroMQ endpoints (DESIGN.md): tipd binds frames and events, connects to the controller."""

    model_config = ConfigDict(extra="forbid")
    frames: str = "tcp://127.0.0.1:5550"  #: SUB, bound: publishers connect here
    control: str = "tcp://127.0.0.1:5551"  #: DEALER, connects to the controller's ROUTER
    events: str = "tcp://127.0.0.1:5552"  #: PUB, bound: dashboards subscribe here
    #: ROUTER, bound: operator commands (``tipd hold | release | reset | status``)
    operator: str = "tcp://127.0.0.1:5553"
    #: PUB, bound: every valid frame and lines message as received, for dashboards that draw
    #: the scan line by line (``tipd web``); see ``mirror_frames``
    preview: str = "tcp://127.0.0.1:5554"


class SafetyConfig(BaseModel):
    """Hard limits and budgets; defaults and meanings are :class:`tipd.safety.Limits`'."""

    model_config = ConfigDict(extra="forbid")
    max_bias_V: float = Field(Limits.max_bias_V, gt=0)
    min_pulse_s: float = Field(Limits.min_pulse_s, gt=0)
    max_pulse_s: float = Field(Limits.max_pulse_s, gt=0)
    max_crash_nm: float = Field(Limits.max_crash_nm, gt=0)
    max_move_nm: float = Field(Limits.max_move_nm, gt=0)
    max_actions_per_hour: int = Field(Limits.max_actions_per_hour, ge=0)
    max_fruitless: int = Field(Limits.max_fruitless, ge=1)
    forbidden_radius_nm: float = Field(Limits.forbidden_radius_nm, ge=0)
    cooldown_s: float = Field(Limits.cooldown_s, ge=0)
    stop_file: Path | None = None  #: while this file exists, no command is sent


class PolicySettings(BaseModel):
    """:class:`tipd.policy.PolicyConfig`'s figures (its ladders are not configurable here)."""

    model_config = ConfigDict(extra="forbid")
    confidence: float = Field(0.9, ge=0, le=1)  #: a decision surely bad at this confidence ...
    consecutive: int = Field(3, ge=1)  #: ... this many decisions in a row act
    weak_confidence: float = Field(0.5, ge=0, le=1)  #: a decision more likely bad ...
    weak_consecutive: int = Field(8, ge=1)  #: ... this many in a row act too
    moves_before_tip: int = Field(2, ge=0)  #: moves for a sample fault before blaming the tip
    move_nm: float = Field(150.0, gt=0)  #: step of a move to a fresh area
    relocate: bool = True  #: move to a fresh area right after each pulse or crash


class ControllerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(5.0, gt=0)  #: wait this long for a reply ...
    retries: int = Field(2, ge=0)  #: ... then resend the same command id this many times


class SecuritySettings(BaseModel):
    """ZeroMQ CURVE (:mod:`tipd.curve`): on whenever ``secret_key`` is set, and required (tipd
    refuses to start without it) when the frames or events endpoint binds beyond loopback."""

    model_config = ConfigDict(extra="forbid")
    secret_key: Path | None = None  #: tipd's key pair (the .key_secret file from `tipd keys`)
    allowed_keys: Path | None = None  #: folder of the publishers' and dashboards' public keys
    controller_key: Path | None = None  #: the controller's public key (sim or bridge)


class ArchiveSettings(BaseModel):
    """The frame archive (:mod:`tipd.archive`): every whole frame classified, as ``.npy`` +
    sidecar with the verdict, the oldest dropped first beyond ``max_mb`` or ``max_days``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    #: where (default: ``archive/`` in :func:`state_dir`)
    folder: Path = Field(default_factory=lambda: state_dir() / "archive")
    max_mb: float = Field(10_000.0, gt=0)  #: at most this many megabytes on disk
    max_days: float = Field(30.0, gt=0)  #: nothing older than this


class WebSettings(BaseModel):
    """``tipd web`` (:mod:`tipd.web`): where it listens, where labels go, whom it tells."""

    model_config = ConfigDict(extra="forbid")
    #: host:port; beyond loopback (e.g. 0.0.0.0:8080) a ``token_file`` is required
    listen: str = "127.0.0.1:8080"
    #: a file holding the token every browser must give (``?token=`` once) when exposed
    token_file: Path | None = None
    #: labelled scans, one folder per class (default: ``labels/`` in :func:`state_dir`)
    labels: Path = Field(default_factory=lambda: state_dir() / "labels")
    #: incoming-webhook URL (Slack, Mattermost, Zulip) for needs-operator, blind, stop file
    #: and a silent controller; none: alerts are logged only
    webhook: str | None = None


class Settings(BaseSettings):
    """All of tipd's settings."""

    model_config = SettingsConfigDict(env_prefix="TIPD_", env_nested_delimiter="__", extra="forbid")
    endpoints: Endpoints = Endpoints()
    microscopes: list[str] = []  #: allowed microscope ids (empty: any)
    model: str = "generic"  #: default model when a frame names no known surface
    models: dict[str, str] = {}  #: surface → model name or folder (default: same name)
    #: SQLite journal (WAL); default ``journal.sqlite`` in :func:`state_dir`
    journal: Path = Field(default_factory=default_journal)
    #: decide and report, never command (the default; going live is a deliberate step:
    #: ``advisory = false`` or ``tipd run --live``)
    advisory: bool = True
    window_lines: int = Field(64, ge=8)  #: rolling window of newest lines classified mid-frame
    window_every: int = Field(16, ge=1)  #: classify the window every this many new lines
    #: Let window decisions drive the policy. Off by default: windows are classified and
    #: published (state events, journal, line jumps), but only whole frames are acted on. The
    #: shipped models know whole frames; a window (the newest lines squeezed into the model's
    #: square input) misreads them: in a 60 s demo on Au(111), none of 137 windows over a
    #: sharp tip was called good, and the pulses they set off blunted sharp tips.
    act_on_windows: bool = False
    queue_frames: int = Field(4, ge=1)  #: per microscope; older frames are skipped under load
    health_s: float = Field(5.0, gt=0)  #: seconds between health events
    #: full reports (log, journal row, event) of one kind of error from one microscope per
    #: second; more are counted and summarised (``tipd.ratelimit``)
    error_events_per_s: int = Field(20, ge=1)
    #: frame rows older than this are dropped from the journal (commands are kept)
    retention_days: float = Field(30.0, gt=0)
    #: microscope ids served at once when ``microscopes`` is empty; frames from more are
    #: refused with an error event (each microscope holds its frame buffers and safety state)
    max_microscopes: int = Field(64, ge=1)
    #: messages waiting on the frame socket at most (ZeroMQ's receive high-water mark); under
    #: a flood the newest are what matter, and memory stays below this × the message size
    queue_messages: int = Field(1000, ge=1)
    #: the largest message part accepted on the frame socket, MB (ZeroMQ drops the sender's
    #: connection beyond it); a 4096 × 4096 float32 frame is 67 MB
    max_message_mb: float = Field(80.0, gt=0)
    #: this many unfamiliar whole frames in a row on one microscope raise a health event at
    #: once (and it stays in every health event until a familiar frame): tipd is blind there
    blind_after: int = Field(3, ge=1)
    #: ONNX Runtime intra-op threads (0: all cores); one leaves the other core of two to the
    #: frame's physical tests, which run meanwhile (:mod:`tipd.evidence`)
    threads: int = Field(1, ge=0)
    #: publish every valid frame and lines message again on the preview endpoint, so
    #: ``tipd web`` draws the scan line by line
    mirror_frames: bool = True
    safety: SafetyConfig = SafetyConfig()
    policy: PolicySettings = PolicySettings()
    controller: ControllerSettings = ControllerSettings()
    security: SecuritySettings = SecuritySettings()
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any, **_: Any
    ) -> tuple[Any, ...]:
        # TIPD_* environment variables override the file's values
        return (env_settings, init_settings)


class ConfigError(UserError, ValueError):
    """Settings that cannot be used: the message names the file (or variable), the key and
    what is wrong, in one line."""


def load(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``path`` (TOML), then ``TIPD_*`` environment variables, then
    ``overrides`` (the command line). A missing ``path`` is an error; None means defaults.
    Raises :class:`ConfigError` for a missing file, invalid TOML or an invalid value."""
    data: dict[str, Any] = {}
    where = str(path) if path is not None else "settings"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        settings = Settings(**data)  # environment variables override file values here
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        value = first.get("input")
        raise ConfigError(
            f"{where}: {key}: {first['msg']}, got {value!r}{more} "
            f"(a TIPD_{key.upper().replace('.', '__')} variable overrides the file)"
        ) from None
    if overrides:  # the command line's own values, already checked by its parser
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    return settings
