"""``tipd watch-folder DIR``: every scan the acquisition software autosaves into a folder becomes
a frame for the daemon as soon as its file is complete. Works with any vendor's software
(Nanonis ``.sxm``, Omicron MATRIX, RHK ``.sm4``, Gwyddion, ``.npy`` + sidecar), without its
remote interface.

A file counts as complete when its size and modification time (and its sidecar's, for ``.npy``)
have not changed for ``settle_s`` seconds. A complete file that cannot be read is reported once
(one line on stderr) and tried again only if it changes; the watcher goes on with the others.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from tipd.protocol import encode_frame
from tipd.readers import ReaderError, find_scans, read_any

Signature = tuple[tuple[int, int], ...]


def signature(path: Path) -> Signature:
    """Size and modification time (ns) of ``path`` and, for ``.npy``, of its sidecar; ``(-1,
    -1)`` for a file that is not there."""
    files = [path, path.with_suffix(".json")] if path.suffix.lower() == ".npy" else [path]
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((-1, -1))
    return tuple(out)


@dataclass
class FolderWatcher:
    """Which scans under ``folder`` are new and complete (see the module docstring)."""

    folder: Path
    settle_s: float = 2.0
    #: path → (signature, when it was first seen with that signature)
    pending: dict[Path, tuple[Signature, float]] = field(default_factory=dict)
    #: path → the signature it was taken (or failed) with
    done: dict[Path, Signature] = field(default_factory=dict)

    def skip_existing(self) -> None:
        """Count every scan already in the folder as taken: only new ones are published."""
        for path in find_scans(self.folder):
            self.done[path] = signature(path)

    def poll(self, now: float) -> list[Path]:
        """Scans that are complete now and not taken in this form before, oldest first."""
        ready = []
        for path in find_scans(self.folder):
            sig = signature(path)
            if self.done.get(path) == sig:
                continue
            seen = self.pending.get(path)
            if seen is None or seen[0] != sig:
                self.pending[path] = (sig, now)
            elif now - seen[1] >= self.settle_s:
                ready.append((seen[1], path))
        for _, path in sorted(ready):
            self.done[path] = self.pending.pop(path)[0]
        return [p for _, p in sorted(ready)]


def watch_folder(
    folder: Path,
    endpoint: str,
    microscope: str = "stm1",
    surface: str | None = None,
    poll_s: float = 1.0,
    settle_s: float = 2.0,
    existing: bool = False,
    max_frames: int | None = None,
) -> int:
    """Publish each new complete scan under ``folder`` to ``endpoint`` (connecting a PUB), as
    a whole frame of ``microscope``; until interrupted, or ``max_frames``. Returns frames sent."""
    watcher = FolderWatcher(folder, settle_s)
    if not existing:
        watcher.skip_existing()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 2000)
    pub.connect(endpoint)
    sent = 0
    print(
        f"watching {folder} for new scans (complete after {settle_s:g} s unchanged); "
        f"frames to {endpoint} as {microscope}",
        file=sys.stderr,
        flush=True,
    )
    try:
        while max_frames is None or sent < max_frames:
            for path in watcher.poll(time.monotonic()):
                try:
                    frame = read_any(path)
                except ReaderError as exc:
                    print(f"not published: {exc}", file=sys.stderr, flush=True)
                    continue
                frame = frame.replace(
                    microscope=microscope,
                    frame_id=f"{path.stem}"[:128],
                    seq=sent,
                    surface=surface,
                    t_acquired=time.time(),
                )
                pub.send_multipart(encode_frame(frame.header(), frame.data))
                sent += 1
                print(
                    f"{frame.frame_id}: {path.name} {frame.shape[1]}×{frame.shape[0]} px",
                    flush=True,
                )
                if max_frames is not None and sent >= max_frames:
                    break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        pub.close()
    return sent
