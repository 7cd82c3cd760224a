"""``tipd web`` in a real browser (headless Chromium through Selenium) beside a real daemon:
the live page draws a scan line by line and stops the microscope; the labelling page labels
archived frames with the keyboard into a folder that training reads as it is; /metrics counts;
bad requests get a clear error."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tests.conftest import free_port
from tests.test_daemon import Daemon, frame, model_dir, start, stop
from tipd.frames import Frame
from tipd.protocol import encode_frame

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@dataclass
class Web:
    daemon: Daemon
    proc: subprocess.Popen[str]
    url: str
    labels: Path
    models: Path
    exe: list[str]


def _http(url: str, body: object | None = None) -> tuple[int, Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            raw = reply.read()
            status = reply.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    tiny_model: Path,
    tipd_exe: list[str],
    extra: str = "",
    thresholds: float | None = None,
    webhook: str | None = None,
) -> Iterator[Web]:
    """A daemon (tests.test_daemon.start) and ``tipd web`` beside it, on free ports."""
    models = model_dir(tiny_model, tmp_path / "models", thresholds)
    d = start(tmp_path, models, tipd_exe, extra=extra)
    port = free_port()
    proc = subprocess.Popen(
        [
            *tipd_exe,
            "web",
            "--config",
            str(tmp_path / "tipd.toml"),
            "--listen",
            f"127.0.0.1:{port}",
            "--labels",
            str(tmp_path / "labels"),
            *(["--webhook", webhook] if webhook else []),
        ],
        env={**os.environ, "TIPD_MODELS_DIR": str(models)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if _http(url + "/api/state")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"tipd web did not start: {proc.communicate()[0]}")
    try:
        yield Web(d, proc, url, tmp_path / "labels", models, tipd_exe)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        stop(d)


@pytest.fixture
def web(tmp_path: Path, tiny_model: Path, tipd_exe: list[str]) -> Iterator[Web]:
    with serving(tmp_path, tiny_model, tipd_exe) as w:
        yield w


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_window_size(1400, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def _until(check: Any, seconds: float = 20.0) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def _chunks(f: Frame, lines: int = 8) -> Iterator[list[bytes]]:
    for first in range(0, f.shape[0], lines):
        f = f.replace(t_acquired=time.time())
        yield encode_frame(f.header(first, lines), f.data[first : first + lines])


def test_the_live_page_draws_the_scan_and_stops_the_microscope(web: Web, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(web.url + "/")
    _until(lambda: browser.find_element(By.ID, "link").text == "connected")
    # before any frame: the daemon's state and mode, asked of it at once
    _until(lambda: browser.find_element(By.ID, "daemon").text == "serving")
    assert "LIVE" in browser.find_element(By.ID, "mode").text
    f = frame(rows=64, frame_id="live1")
    f.data[:, 26:38] += 3e-10  # a ridge down the middle: bright there, dark beside it
    for k, parts in enumerate(_chunks(f)):
        web.daemon.send(parts)
        _until(lambda k=k: browser.execute_script("return window.tipdDrawn.length") > k)
    # what is drawn is the scan: rows scanned so far, bright where the surface is high
    ridge, beside = browser.execute_script(
        """const c = document.querySelector('#mic-stm1 .img');
           const g = c.getContext('2d');
           const px = (x, y) => g.getImageData(x, y, 1, 1).data[0];
           return [px(32, 40), px(8, 40)];"""
    )
    assert ridge > beside + 50
    web.daemon.send(encode_frame(f.header(), f.data))  # the whole frame: a decision
    verdict = _until(
        lambda: browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .verdict").get_attribute(
            "data-state"
        )
    )
    assert verdict in json.loads((web.models / "generic" / "manifest.json").read_text())[
        "classes"
    ] + ["unknown", "unfamiliar"]
    _until(lambda: "LIVE" in browser.find_element(By.ID, "mode").text)
    # every source's say under the verdict; and an operator says this tip is good
    assert browser.find_elements(By.CSS_SELECTOR, "#mic-stm1 .evidence li")
    browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .good-tip").click()
    _until(
        lambda: (
            "is the reference of its area"
            in browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .said").text
        )
    )
    browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .stop").click()
    browser.switch_to.alert.accept()  # the confirmation
    _until(
        lambda: (
            browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .gate").get_attribute("data-held")
            == "true"
        )
    )
    status = subprocess.run(
        [*web.exe, "status", "stm1", "--config", str(web.labels.parent / "tipd.toml"), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(status.stdout)["gates"]["stm1"]["held"] is True  # the daemon holds it
    assert "on hold" in browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .said").text
    _until(lambda: browser.find_element(By.ID, "daemon").text == "held: stm1: on hold")
    browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .release").click()
    _until(
        lambda: (
            browser.find_element(By.CSS_SELECTOR, "#mic-stm1 .gate").get_attribute("data-held")
            == "false"
        )
    )
    timeline = browser.find_element(By.ID, "events").text
    assert "hold by web:" in timeline and "release by web:" in timeline
    assert "reference by web:" in timeline
    metrics = _http(web.url + "/metrics")[1]
    assert 'tipd_frames_total{microscope="stm1"} 1.0' in metrics
    assert "tipd_daemon_up 1.0" in metrics
    serving = 'tipd_daemon_state{state="serving"} 1.0'  # released: serving again
    _until(lambda: serving in _http(web.url + "/metrics")[1])
    assert "tipd_decision_latency_seconds_bucket" in metrics


def test_the_labelling_page_labels_archived_frames_with_the_keyboard(
    web: Web, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tipd.train.data import from_folder

    for k in range(6):
        f = frame(frame_id=f"arch{k}", data=np.random.default_rng(k).normal(0, 1e-10, (32, 32)))
        web.daemon.send(encode_frame(f.header(), f.data))
        web.daemon.events_until("state.stm1", 10.0)
    browser.get(web.url + "/label")
    image = _until(lambda: browser.find_element(By.ID, "scan").get_attribute("data-key"))
    assert image.startswith("stm1/")
    classes = _http(web.url + "/api/queue")[1]["classes"]
    body = browser.find_element(By.TAG_NAME, "body")
    t0 = time.monotonic()
    for key in "1212":
        body.send_keys(key)
        time.sleep(0.05)
    _until(lambda: browser.execute_script("return window.tipdLabelled") == 4)
    body.send_keys("u")  # take back the last label
    _until(lambda: browser.execute_script("return window.tipdLabelled") == 3)
    body.send_keys("1")
    _until(lambda: browser.execute_script("return window.tipdLabelled") == 4)
    per_minute = 5 / (time.monotonic() - t0) * 60
    print(f"labelled {per_minute:.0f} scans per minute (scripted keyboard, headless Chromium)")
    counts = {c: len(list((web.labels / c).glob("*.npy"))) for c in classes}
    assert counts[classes[0]] == 3 and counts[classes[1]] == 1
    ds = from_folder(web.labels, tuple(classes))  # as `tipd train --data` reads it
    assert len(ds) == 4 and ds.y[:, 0].sum() == 3
    assert _http(web.url + "/api/queue")[1]["remaining"] == 2
    body.send_keys(Keys.ESCAPE)


def test_bad_requests_get_a_clear_error_and_nothing_else_changes(web: Web) -> None:
    first = _http(web.url + "/api/queue")[1]["classes"][0]
    cases = [
        ("/api/label", b"not json", "not JSON"),
        ("/api/label", {"key": "nope", "class": first}, "no scan 'nope'"),
        ("/api/label", {"key": "nope", "class": "sharpish"}, "unknown class 'sharpish'"),
        ("/api/label", {"key": 3}, 'expected {"key"'),
        ("/api/hold", {}, "microscope: required"),
        ("/api/hold", [1, 2], "expected a JSON object"),
        ("/api/undo", {}, "nothing to undo"),
    ]
    for path, body, words in cases:
        status, reply = _http(web.url + path, body)
        assert status == 400 and words in reply["error"], (path, reply)
    status, reply = _http(web.url + "/api/scan?key=missing")
    assert status == 400 and "no scan" in reply["error"]
    assert list(web.labels.glob("*/*")) == []
    assert _http(web.url + "/api/state")[0] == 200  # still serving


class _Hook(http.server.BaseHTTPRequestHandler):
    """An incoming-webhook endpoint, as Slack's, Mattermost's or Zulip's: JSON posts."""

    posts: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        assert self.headers["Content-Type"] == "application/json"
        _Hook.posts.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_a_webhook_hears_of_a_microscope_needing_an_operator_and_a_silent_controller(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.posts = []
    hook = f"http://127.0.0.1:{server.server_address[1]}/hooks/tipd"
    # every decision acts; one action without a good frame and the gate waits for an operator;
    # nobody answers on the control endpoint
    extra = "[safety]\nmax_fruitless = 1\n[controller]\ntimeout_s = 0.3\nretries = 0\n"
    try:
        with serving(tmp_path, tiny_model, tipd_exe, extra, thresholds=0.0, webhook=hook) as w:
            for k in range(4):
                w.daemon.send(encode_frame(frame(frame_id=f"h{k}").header(), frame().data))
                w.daemon.events_until("state.stm1", 10.0)
            texts = _until(lambda: len(_Hook.posts) >= 2 and [p["text"] for p in _Hook.posts])
            time.sleep(1.0)  # and no more than once each
            metrics = _http(w.url + "/metrics")[1]
    finally:
        server.shutdown()
    texts = [p["text"] for p in _Hook.posts]
    assert sum("stm1 needs an operator" in t for t in texts) == 1, texts
    assert sum("controller of stm1 does not answer" in t for t in texts) == 1, texts
    assert 'tipd_needs_operator{microscope="stm1"} 1.0' in metrics
    assert 'tipd_actions_total{action="pulse",microscope="stm1",outcome="failed"} 1.0' in metrics


def test_beyond_loopback_every_request_needs_the_token(tmp_path: Path, tipd_exe: list[str]) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    exposed = subprocess.run(
        [*tipd_exe, "web", "--listen", f"0.0.0.0:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exposed.returncode == 2 and "needs a token: --token-file" in exposed.stderr
    token = tmp_path / "token"
    token.write_text("correct-horse-battery-staple\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            *tipd_exe,
            "web",
            "--listen",
            f"127.0.0.1:{port}",
            "--token-file",
            str(token),
            "--scans",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _reachable(url))
        assert _http(url + "/api/state")[0] == 401
        assert _http(url + "/metrics")[0] == 401
        assert _http(url + "/api/state?token=wrong-horse-battery-staple")[0] == 401
        with urllib.request.urlopen(url + "/?token=correct-horse-battery-staple") as reply:
            assert reply.status == 200 and "tipd_token=" in reply.headers["set-cookie"]
        bearer = urllib.request.Request(
            url + "/api/state", headers={"Authorization": "Bearer correct-horse-battery-staple"}
        )
        with urllib.request.urlopen(bearer) as reply:
            assert reply.status == 200

        def daemon() -> dict[str, Any]:
            with urllib.request.urlopen(bearer) as reply:
                said: dict[str, Any] = json.loads(reply.read())[0]
                return said

        absent = _until(lambda: daemon()["answering"] is False and daemon())  # no tipd run here
        assert absent["endpoint"] == "tcp://127.0.0.1:5553" and absent["state"] is None

        async def opens(path: str) -> bool:
            try:
                async with connect(f"ws://127.0.0.1:{port}{path}"):
                    return True
            except InvalidStatus:  # refused before the upgrade
                return False

        assert not asyncio.run(opens("/ws"))
        assert asyncio.run(opens("/ws?token=correct-horse-battery-staple"))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/", timeout=1)
    except urllib.error.HTTPError:
        return True  # it answered (401)
    except OSError:
        return False
    return True
