"""ZeroMQ CURVE for tipd's endpoints: key files, allow-lists of client keys, and a count of
the peers refused.

Each party has a key pair made by ``tipd keys DIR --name NAME`` (``NAME.key`` holds the public
key and goes to the peers; ``NAME.key_secret`` holds both and stays). A socket that **binds**
is a CURVE server: it needs its own key pair and a folder of the public keys it accepts (any
other client fails the handshake, is counted and logged, and none of its messages is ever
delivered). A socket that **connects** is a CURVE client: it needs its own key pair and the
server's public key.

tipd binds its frame SUB and event PUB, the virtual microscope and the bridges bind their
command ROUTER; the others connect. The ZAP handler (pyzmq's authenticator) runs once per
context; :class:`AllowList` is its credentials provider.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
import zmq
import zmq.asyncio
import zmq.auth

from tipd.errors import UserError

log = structlog.get_logger("tipd.curve")


class CurveError(UserError):
    """Keys missing or unreadable, or CURVE required and not configured."""


def generate(directory: Path, name: str, replace: bool = False) -> tuple[Path, Path]:
    """A new key pair ``directory/name.key`` (public) and ``name.key_secret`` (mode 0600).

    An existing pair is never overwritten unless ``replace`` (its peers would lose tipd):
    :class:`CurveError` names it instead."""
    pair = (directory / f"{name}.key", directory / f"{name}.key_secret")
    existing = [p for p in pair if p.exists()]
    if existing and not replace:
        raise CurveError(
            f"{existing[0]} exists; its peers know it. Pick another --name, or --replace to "
            "make a new pair (every peer then needs the new public key)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret key is never readable by others, not even for a moment
    try:
        public, secret = (Path(p) for p in zmq.auth.create_certificates(str(directory), name))
    finally:
        os.umask(old)
    secret.chmod(0o600)
    public.chmod(0o644)
    return public, secret


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, private = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveError(f"cannot read CURVE key {path}: {exc}") from exc
    if secret and not private:
        raise CurveError(f"{path} holds no secret key (use the .key_secret file)")
    if secret and path.stat().st_mode & 0o077:
        log.warning(
            "secret key readable by others; chmod 600 it",
            path=str(path),
            mode=oct(path.stat().st_mode & 0o777),
        )
    return public, private


def loopback(endpoint: str) -> bool:
    """True when ``endpoint`` is reachable from this host only (loopback TCP, ipc, inproc)."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, a host name or '*': beyond loopback


@dataclass
class AllowList:
    """Client public keys (Z85) allowed to connect; ``refused`` counts the others per ZAP
    domain (``frames``, ``events``, ``commands``)."""

    keys: set[bytes]
    refused: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_folder(cls, folder: Path) -> AllowList:
        if not folder.is_dir():
            raise CurveError(f"allowed-keys folder {folder} does not exist")
        keys = {_load(p, secret=False)[0] for p in sorted(folder.glob("*.key"))}
        if not keys:
            raise CurveError(f"no public keys (*.key) in {folder}: nobody could connect")
        return cls(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: may the client with public ``key`` connect to a socket of ``domain``?"""
        if key in self.keys:
            return True
        self.refused[domain] += 1
        log.warning("CURVE client refused", domain=domain, client_key=key.decode(errors="replace"))
        return False


@dataclass
class Curve:
    """Our key pair, the clients we accept (to bind) and the server we trust (to connect)."""

    public: bytes
    secret: bytes
    allowed: AllowList | None = None
    server_key: bytes | None = None
    _auth: Any = None

    @classmethod
    def from_files(
        cls, secret_file: Path, allowed_dir: Path | None = None, server_key: Path | None = None
    ) -> Curve:
        public, secret = _load(secret_file, secret=True)
        assert secret is not None
        return cls(
            public,
            secret,
            AllowList.from_folder(allowed_dir) if allowed_dir else None,
            _load(server_key, secret=False)[0] if server_key else None,
        )

    def server(self, sock: zmq.Socket[Any], domain: str) -> None:
        """Make ``sock`` (which binds) a CURVE server that accepts only the allowed keys."""
        if self.allowed is None:
            raise CurveError(f"{domain}: a CURVE server needs a folder of allowed client keys")
        self.start_authenticator(sock.context)
        sock.zap_domain = domain.encode()
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def client(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` (which connects) a CURVE client of the trusted server key."""
        if self.server_key is None:
            raise CurveError("a CURVE client needs the server's public key")
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_key

    def start_authenticator(self, ctx: zmq.Context[Any]) -> None:
        """Start the context's ZAP handler once (a thread, or a task for an asyncio context)."""
        if self._auth is not None:
            return
        if isinstance(ctx, zmq.asyncio.Context):
            from zmq.auth.asyncio import AsyncioAuthenticator

            auth: Any = AsyncioAuthenticator(ctx)
        else:
            from zmq.auth.thread import ThreadAuthenticator

            auth = ThreadAuthenticator(ctx)
        auth.start()
        for domain in ("frames", "events", "commands", "operator"):
            auth.configure_curve_callback(domain, credentials_provider=self.allowed)
        self._auth = auth

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    @property
    def refused(self) -> dict[str, int]:
        return dict(self.allowed.refused) if self.allowed else {}


def required(binds: dict[str, str], curve: Curve | None, setting: str) -> None:
    """Refuse to run when an endpoint in ``binds`` (name → endpoint) is beyond loopback and
    CURVE is not configured: CURVE is on by default there, and cannot be turned off."""
    wide = [f"{name} {ep}" for name, ep in binds.items() if not loopback(ep)]
    if wide and (curve is None or curve.allowed is None):
        raise CurveError(
            f"{', '.join(wide)} bind beyond loopback, so CURVE is required: make keys with "
            f"`tipd keys`, then set {setting}"
        )


def from_paths(
    secret: Path | None, allowed: Path | None = None, server_key: Path | None = None
) -> Curve | None:
    """The :class:`Curve` these key files describe, or None when no secret key is given."""
    if secret is None:
        if allowed or server_key:
            raise CurveError("allowed keys or a server key were given without a secret key")
        return None
    return Curve.from_files(secret, allowed, server_key)
