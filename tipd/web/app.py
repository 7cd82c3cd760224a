"""The web application of ``tipd web``: pages, a websocket of live messages, the operator's
Stop and Release, labelling, and ``/metrics`` (Starlette, served by uvicorn).

=========================  ====================================================================
``GET /``                  the live page
``GET /label``             the labelling page
``WS /ws``                 live messages (:mod:`tipd.web.hub`): a snapshot, then each as it comes
``GET /api/state``         the same snapshot as JSON
``POST /api/hold``         ``{"microscope": "stm1"}``: an operator hold (tipd sends it nothing)
``POST /api/release``      ``{"microscope": "stm1"}``: end the hold
``POST /api/reference``    ``{"microscope": "stm1"}`` (and optionally ``"frame_id"``): its latest
                           frame (or that one) shows a good tip, the reference of its area
``GET /api/queue``         the labelling queue's head, the classes and their keys
``GET /api/scan?key=K``    one scan of the queue as PNG (scale bar, height span)
``POST /api/label``        ``{"key": K, "class": C}``: label it
``POST /api/undo``         take back the last label
``GET /metrics``           Prometheus (:mod:`tipd.web.metrics`)
=========================  ====================================================================

A malformed request gets status 400 and ``{"error": "..."}`` saying what was wrong; an
operator request the daemon does not answer gets 502. When tipd web listens beyond loopback,
every request must carry the token (``?token=`` once, then a cookie, or
``Authorization: Bearer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import structlog
import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tipd.curve import Curve
from tipd.protocol import EVENT_KINDS, OperatorRequest, ProtocolError
from tipd.web.hub import Hub
from tipd.web.labels import LabelError, Labelling
from tipd.web.metrics import Metrics
from tipd.web.notify import Alerts, post

log = structlog.get_logger("tipd.web")

#: messages a slow browser may fall behind by before the oldest are dropped
CLIENT_QUEUE = 2000
#: seconds between two questions to the daemon about its state
DAEMON_POLL_S = 3.0


@dataclass
class WebConfig:
    """What ``tipd web`` serves and where it listens for the daemon."""

    events: str  #: the daemon's events endpoint
    preview: str  #: the daemon's preview endpoint (frames and lines as received)
    operator: str  #: the daemon's operator endpoint
    curve: Curve | None = None  #: client keys, where the daemon's endpoints need CURVE
    labelling: Labelling | None = None
    webhook: str | None = None
    token: str | None = None  #: required on every request when not None
    who: str = "web"  #: operator name journaled for Stop and Release


@dataclass
class State:
    """The running application: the hub, metrics, alerts and the connected browsers."""

    config: WebConfig
    hub: Hub = field(default_factory=Hub)
    metrics: Metrics = field(default_factory=Metrics)
    alerts: Alerts = field(default_factory=Alerts)
    clients: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    webhook_failures: int = 0
    bad_requests: int = 0

    def broadcast(self, messages: list[dict[str, Any]]) -> None:
        for queue in self.clients:
            for message in messages:
                if queue.full():
                    queue.get_nowait()  # the oldest goes: a slow browser never stalls the rest
                queue.put_nowait(message)

    async def listen(self) -> None:
        """Read the daemon's events for as long as the application runs."""
        ctx = zmq.asyncio.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        if self.config.curve is not None:
            self.config.curve.client(sub)
        sub.connect(self.config.events)
        sub.connect(self.config.preview)  # one SUB reads both: events and scans
        for topic in (*EVENT_KINDS, "frame.", "lines."):  # "health" alone: the periodic one
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            while True:
                parts = await sub.recv_multipart()
                messages, event = self.hub.apply(parts)
                self.broadcast(messages)
                if event is not None:  # count it, alert on it
                    self.metrics.observe(event.kind, event.body)
                    for text in self.alerts.on_event(event.kind, event.body):
                        await self.notify(text)
        finally:
            sub.close()

    async def watch_daemon(self, every_s: float = DAEMON_POLL_S) -> None:
        """Ask the daemon for its state every ``every_s`` seconds (its operator endpoint's
        ``status``), so the page says at once what it is doing, or that no daemon answers."""
        from tipd.operator import NoAnswerError, ask

        request = OperatorRequest(op="status")
        endpoint = self.config.operator
        while True:
            try:
                reply = await asyncio.to_thread(ask, endpoint, request, 2.0, self.config.curve)
            except (NoAnswerError, ProtocolError):
                said = self.hub.daemon_heard(None, endpoint=endpoint)
                self.metrics.daemon(None)
            else:
                said = self.hub.daemon_heard(
                    reply.state, reply.why, reply.detail.startswith("advisory"), endpoint
                )
                self.metrics.daemon(reply.state)
            self.broadcast(said)
            await asyncio.sleep(every_s)

    async def notify(self, text: str) -> None:
        log.warning("alert", text=text)
        if not self.config.webhook:
            return
        try:
            await asyncio.to_thread(post, self.config.webhook, text)
        except OSError as exc:
            self.webhook_failures += 1
            log.error("webhook failed", url=self.config.webhook, error=str(exc))


def _page(name: str) -> str:
    return resources.files("tipd.web").joinpath("static", name).read_text(encoding="utf-8")


def bad_request(state: State, detail: str) -> JSONResponse:
    state.bad_requests += 1
    return JSONResponse({"error": detail}, status_code=400)


async def _json(request: Request) -> dict[str, Any]:
    """The request's JSON object; :class:`ValueError` saying what is wrong otherwise."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    return body


def create_app(config: WebConfig) -> Starlette:
    """The application (see the module docstring)."""
    state = State(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(state.listen()), asyncio.create_task(state.watch_daemon())]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def live(request: Request) -> Response:
        return HTMLResponse(_page("live.html"))

    async def label_page(request: Request) -> Response:
        return HTMLResponse(_page("label.html"))

    async def snapshot(request: Request) -> Response:
        return JSONResponse(state.hub.snapshot())

    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(CLIENT_QUEUE)
        state.clients.add(queue)

        async def pump() -> None:
            for message in state.hub.snapshot():
                await ws.send_json({**message, "snapshot": True})
            while True:
                await ws.send_json(await queue.get())

        sender = asyncio.create_task(pump())
        try:  # until the browser goes (a closed tab, or the server shutting down)
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
            ):
                await sender
            state.clients.discard(queue)

    def operator(
        op: Literal["hold", "release", "reference"],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            from tipd.operator import NoAnswerError, ask

            try:
                body = await _json(request)
                frame_id = body.get("frame_id") if op == "reference" else None
                req = OperatorRequest(
                    op=op, microscope=body.get("microscope"), who=config.who, frame_id=frame_id
                )
            except (ValueError, ProtocolError) as exc:
                return bad_request(state, str(exc).splitlines()[0])
            if req.microscope is None:
                return bad_request(state, 'microscope: required, e.g. {"microscope": "stm1"}')
            try:
                reply = await asyncio.to_thread(ask, config.operator, req, 5.0, config.curve)
            except (NoAnswerError, ProtocolError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=502)
            return JSONResponse(reply.model_dump(mode="json"), status_code=200 if reply.ok else 409)

        return handle

    def labelling() -> Labelling:
        if config.labelling is None:
            raise LabelError("labelling is off: start tipd web with an archive or --scans DIR")
        return config.labelling

    async def queue(request: Request) -> Response:
        try:
            lab = labelling()
        except LabelError as exc:
            return bad_request(state, str(exc))
        await asyncio.to_thread(lab.refresh)
        head = [
            {
                "key": c.key,
                "name": c.path.name,
                "state": c.verdict.get("state"),
                "confidence": c.verdict.get("confidence"),
                "familiarity": c.familiarity,
                "model": c.verdict.get("model"),
            }
            for c in lab.queue[:50]
        ]
        keys = {str(i + 1): c for i, c in enumerate(lab.classes[:9])}
        return JSONResponse(
            {
                "classes": lab.classes,
                "keys": keys,
                "counts": lab.counts(),
                "queue": head,
                "remaining": len(lab.queue),
                "labels": str(lab.labels),
            }
        )

    async def scan(request: Request) -> Response:
        from tipd.readers import ReaderError, read_any
        from tipd.sheet import scan_png

        try:
            candidate = labelling().find(request.query_params.get("key", ""))
            frame = await asyncio.to_thread(read_any, candidate.path)
        except (LabelError, ReaderError) as exc:
            return bad_request(state, str(exc))
        png = await asyncio.to_thread(scan_png, frame.data, frame.scan_size_nm[0])
        return Response(png, media_type="image/png")

    async def label(request: Request) -> Response:
        try:
            body = await _json(request)
            key, cls = body.get("key"), body.get("class")
            if not isinstance(key, str) or not isinstance(cls, str):
                raise LabelError('expected {"key": "<scan>", "class": "<class>"}')
            copies = await asyncio.to_thread(labelling().label, key, cls, config.who)
        except (ValueError, LabelError) as exc:
            return bad_request(state, str(exc))
        except OSError as exc:  # a full or read-only labels disk: said, nothing else lost
            return JSONResponse({"error": f"could not save the label: {exc}"}, status_code=507)
        return JSONResponse({"ok": True, "files": [str(c) for c in copies]})

    async def undo(request: Request) -> Response:
        try:
            back = labelling().undo()
        except LabelError as exc:
            return bad_request(state, str(exc))
        return JSONResponse({"ok": True, "key": back.key})

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.text(), media_type="text/plain; version=0.0.4")

    middleware = [Middleware(TokenMiddleware, token=config.token)] if config.token else []
    app = Starlette(
        routes=[
            Route("/", live),
            Route("/label", label_page),
            WebSocketRoute("/ws", socket),
            Route("/api/state", snapshot),
            Route("/api/hold", operator("hold"), methods=["POST"]),
            Route("/api/release", operator("release"), methods=["POST"]),
            Route("/api/reference", operator("reference"), methods=["POST"]),
            Route("/api/queue", queue),
            Route("/api/scan", scan),
            Route("/api/label", label, methods=["POST"]),
            Route("/api/undo", undo, methods=["POST"]),
            Route("/metrics", metrics),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.tipd = state
    return app


class TokenMiddleware:
    """Every request and websocket carries the token: ``?token=`` (then kept in a cookie), the
    cookie, or a bearer ``Authorization`` header; anything else gets 401 (a websocket: closed)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)  # a plain request or a websocket's
        from_query = request.query_params.get("token")
        given = (
            from_query
            or request.cookies.get("tipd_token")
            or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        )
        if not given or not hmac.compare_digest(given, self.token):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            denied = JSONResponse({"error": "a token is required (?token=...)"}, status_code=401)
            await denied(scope, receive, send)
            return
        if not from_query or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                cookie = f"tipd_token={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, with_cookie)
