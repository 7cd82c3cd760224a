"""tipd web in headless Chromium beside a running daemon: how long from a chunk of scan lines
published to its drawing on the live page.

    .venv/bin/python bench/web.py [--frames 20] [--screenshots docs/]

A real daemon (shipped model, advisory) and ``tipd web`` run on free ports; 512×512 frames of
the virtual microscope's surface are published in 16-line chunks, one chunk every 20 ms (a
10 s frame). Each chunk carries its publication time; the page records when it has drawn it.
Both run on this machine, on one clock. ``--screenshots`` also writes the live and labelling
pages as PNG (``web-live.png``, ``web-label.png``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import zmq

from tipd.frames import Frame
from tipd.protocol import encode_frame
from tipd.synth import generate


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20, help="512² frames to stream")
    parser.add_argument("--surface", default="au111", help="surface of the frames")
    parser.add_argument("--screenshots", type=Path, help="folder for the pages' screenshots")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    tmp = Path(tempfile.mkdtemp())
    frames_ep, events_ep = f"tcp://127.0.0.1:{port()}", f"tcp://127.0.0.1:{port()}"
    (tmp / "tipd.toml").write_text(f"""
journal = "{tmp / "journal.sqlite"}"
advisory = true
[endpoints]
frames = "{frames_ep}"
control = "tcp://127.0.0.1:{port()}"
events = "{events_ep}"
operator = "tcp://127.0.0.1:{port()}"
preview = "tcp://127.0.0.1:{port()}"
[archive]
folder = "{tmp / "archive"}"
""")
    web_port = port()
    cli = [sys.executable, "-m", "tipd.cli"]
    daemon = subprocess.Popen(
        [*cli, "run", "--config", str(tmp / "tipd.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    web = subprocess.Popen(
        [
            *cli,
            "web",
            "--config",
            str(tmp / "tipd.toml"),
            "--listen",
            f"127.0.0.1:{web_port}",
            "--labels",
            str(tmp / "labels"),
            "--model",
            args.surface,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "chromium"
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    browser.set_window_size(1280, 900)
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.connect(frames_ep)
    url = f"http://127.0.0.1:{web_port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/api/state", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        browser.get(url + "/")
        time.sleep(3.0)  # the daemon is up and the page connected
        sent = 0
        for k in range(args.frames):
            z = generate(args.surface, k, seed=21, pixels=512).heights_m.astype(np.float64)
            f = Frame(
                data=z,
                scan_size_nm=(30.0, 30.0),
                microscope="stm1",
                frame_id=f"w{k}",
                surface=args.surface,
            )
            for first in range(0, 512, 16):
                f = f.replace(t_acquired=time.time())
                pub.send_multipart(encode_frame(f.header(first, 16), z[first : first + 16]))
                sent += 1
                time.sleep(0.02)
            pub.send_multipart(encode_frame(f.header(), z))
        time.sleep(2.0)
        drawn = np.array(browser.execute_script("return window.tipdDrawn")) * 1e3
        print("| chunks published | drawn | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        print(
            f"| {sent} | {len(drawn)} | {np.percentile(drawn, 50):.1f} | "
            f"{np.percentile(drawn, 99):.1f} | {drawn.max():.1f} |"
        )
        if args.screenshots is not None:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.screenshots / "web-live.png"))
            browser.get(url + "/label")
            time.sleep(2.0)
            browser.save_screenshot(str(args.screenshots / "web-label.png"))
            print(
                f"wrote {args.screenshots / 'web-live.png'}, {args.screenshots / 'web-label.png'}"
            )
    finally:
        browser.quit()
        pub.close()
        for proc in (web, daemon):
            proc.terminate()
            proc.wait(20)
    print("machine: this one; headless Chromium, tipd web and the daemon on the same cores")


if __name__ == "__main__":
    main()
