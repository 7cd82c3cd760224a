"""RHK ``.sm4`` files: our own reader of the documented layout (as spym's ``rhksm4`` reads it).

Layout, little-endian: a file header (size u16, signature 18×u16, page count u32, object
count u32, object field size u32, 2 reserved u32) and its object list; each object is (id u32,
offset u32, size u32). Object 1 is the page-index header (page count u32, object count u32, 2
reserved u32) whose object 2 is the page-index array: per page a GUID (8×u16), data type u32,
source type u32, object count u32, minor version u32 and an object list, where object 3 is
the page header and 4 the page data. The page header is followed by its own object list,
where object 10 holds the page's strings (label first, z unit tenth).

Image pages (data type 0) hold ``xsize × ysize`` int32 values, physical value
``raw · Zscale + Zoffset``; scan type 0 is forward, 1 backward.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers.error import ReaderError

_PAGE_HEADER = struct.Struct(
    "<HH"  # field size, string count
    "IIIIIIIIIII"  # page type, sub-source, line type, x/y corner, x/y size, image type,
    # scan type, group id, page data size
    "II"  # min, max z
    "fffffffffff"  # x/y/z scale, xy scale, x/y/z offset, period, bias, current, angle
)


@dataclass
class _Page:
    data_type: int
    objects: dict[int, tuple[int, int]] = field(default_factory=dict)


class _Buffer:
    def __init__(self, raw: bytes, path: Path) -> None:
        self.raw, self.path = raw, path

    def unpack(self, fmt: str, offset: int) -> tuple[int | float, ...]:
        try:
            return struct.unpack_from(fmt, self.raw, offset)
        except struct.error as exc:
            raise ReaderError(f"{self.path}: truncated SM4 file at byte {offset}") from exc

    def objects(self, offset: int, count: int) -> tuple[dict[int, tuple[int, int]], int]:
        out: dict[int, tuple[int, int]] = {}
        for k in range(count):
            oid, off, size = self.unpack("<III", offset + 12 * k)
            out.setdefault(int(oid), (int(off), int(size)))
        return out, offset + 12 * count

    def string(self, offset: int) -> tuple[str, int]:
        (length,) = self.unpack("<H", offset)
        chars = self.unpack(f"<{int(length)}H", offset + 2)
        return "".join(chr(int(c)) for c in chars).rstrip("\x00"), offset + 2 + 2 * int(length)


def read_sm4(path: Path, direction: str = "forward", label: str = "Topography") -> Frame:
    """The first image page whose label starts with ``label`` scanned in ``direction``."""
    buf = _Buffer(path.read_bytes(), path)
    (header_size,) = buf.unpack("<H", 0)
    signature = "".join(chr(int(c)) for c in buf.unpack("<18H", 2)).rstrip("\x00")
    if not signature.startswith("STiMage"):
        raise ReaderError(f"{path}: not an RHK SM4 file (signature {signature!r})")
    _, n_objects, _ = buf.unpack("<III", 38)
    file_objects, _ = buf.objects(int(header_size) + 2, int(n_objects))
    if 1 not in file_objects:
        raise ReaderError(f"{path}: SM4 file without a page index")
    index_offset = file_objects[1][0]
    n_pages, n_index_objects = buf.unpack("<II", index_offset)
    index_objects, _ = buf.objects(index_offset + 16, int(n_index_objects))
    offset = index_objects[2][0]
    pages = []
    for _ in range(int(n_pages)):
        data_type, _source, n_obj, _minor = buf.unpack("<IIII", offset + 16)
        objects, offset = buf.objects(offset + 32, int(n_obj))
        pages.append(_Page(int(data_type), objects))
    scan_type = 0 if direction == "forward" else 1
    seen = []
    for page in pages:
        if page.data_type != 0 or 3 not in page.objects or 4 not in page.objects:
            continue
        hoff = page.objects[3][0]
        h = buf.unpack(_PAGE_HEADER.format, hoff)
        n_strings = int(h[1])
        xsize, ysize, scan = int(h[7]), int(h[8]), int(h[10])
        xscale, yscale, zscale = float(h[15]), float(h[16]), float(h[17])
        zoffset, bias, current, angle = float(h[21]), float(h[23]), float(h[24]), float(h[25])
        # after the fields: colour-info count, grid x/y, object count (u32), 64 flag bytes
        (n_header_objects,) = buf.unpack("<I", hoff + _PAGE_HEADER.size + 12)
        header_objects, _ = buf.objects(hoff + _PAGE_HEADER.size + 16 + 64, int(n_header_objects))
        name, zunit = "", "m"
        if 10 in header_objects and n_strings:
            soff = header_objects[10][0]
            strings = []
            for _ in range(min(n_strings, 10)):
                text, soff = buf.string(soff)
                strings.append(text)
            name = strings[0]
            zunit = strings[9] if len(strings) > 9 else "m"
        seen.append(f"{name or '?'}/{'forward' if scan == 0 else 'backward'}")
        if not name.startswith(label) or scan != scan_type:
            continue
        doff, dsize = page.objects[4]
        if dsize < 4 * xsize * ysize:
            raise ReaderError(f"{path}: page {name!r} holds {dsize} bytes, not {xsize}×{ysize}×4")
        raw = np.frombuffer(buf.raw, dtype="<i4", count=xsize * ysize, offset=doff)
        data = raw.reshape(ysize, xsize).astype(np.float64) * zscale + zoffset
        if xscale < 0:
            data = data[:, ::-1]
        return Frame(
            data=data,
            scan_size_nm=(abs(xscale) * xsize * 1e9, abs(yscale) * ysize * 1e9),
            unit="A" if zunit == "A" else "m",
            channel="current" if zunit == "A" else "z",
            direction=direction,
            angle_deg=angle,
            bias_V=bias,
            setpoint_A=current,
            frame_id=path.stem,
            source=str(path),
        )
    raise ReaderError(f"{path}: no {label} image scanned {direction}; pages: {', '.join(seen)}")
