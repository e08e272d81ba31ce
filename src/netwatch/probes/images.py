"""Tell whether bytes are a complete JPEG or PNG, and read its size, without decoding pixels.

A camera with a failing encoder or a flaky link often serves a picture cut short, and a camera web
server in trouble serves an HTML error page with status 200: magic bytes alone catch the second,
only walking the file's structure to its end marker catches the first.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: JPEG markers that stand alone (no length): TEM, RST0-7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})
#: Start-of-frame markers, which carry the height and width (C4, C8, CC are DHT, JPG, DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_EOI, _SOS = 0xD9, 0xDA
#: What cameras append after EOI (padding), which does not make a picture incomplete.
_TRAILER = b"\x00\r\n \t\xff"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A complete image: its format and, when the header says, its dimensions."""

    format: Literal["JPEG", "PNG"]
    width: int | None = None
    height: int | None = None

    def __str__(self) -> str:
        size = f" {self.width}x{self.height}" if self.width and self.height else ""
        return f"{self.format}{size}"


@dataclass(frozen=True, slots=True)
class ImageProblem:
    """Why bytes are not a usable picture."""

    kind: Literal["not_image", "truncated", "corrupt"]
    detail: str


def inspect_image(data: bytes) -> ImageInfo | ImageProblem:
    """Return what the bytes are: a complete JPEG or PNG, or what is wrong with them."""
    if not data:
        return ImageProblem("not_image", "empty body")
    if data.startswith(JPEG_MAGIC):
        return _jpeg(data)
    if data.startswith(PNG_MAGIC):
        return _png(data)
    if PNG_MAGIC.startswith(data) or JPEG_MAGIC.startswith(data):
        return ImageProblem("truncated", f"only {len(data)} bytes, cut off in the signature")
    return ImageProblem("not_image", "neither JPEG nor PNG")


def _jpeg(data: bytes) -> ImageInfo | ImageProblem:
    width = height = None
    pos = 2
    n = len(data)
    while True:
        if pos >= n:
            return ImageProblem("truncated", f"JPEG cut off after {n} bytes, before its image data")
        if data[pos] != 0xFF:
            return ImageProblem("corrupt", f"JPEG has no marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return ImageProblem("truncated", f"JPEG cut off after {n} bytes")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker == _EOI:
            return ImageProblem("corrupt", "JPEG ends before any image data")
        if pos + 2 > n:
            return ImageProblem("truncated", f"JPEG cut off after {n} bytes")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            return ImageProblem("corrupt", f"JPEG segment of length {length} at byte {pos}")
        if pos + length > n:
            return ImageProblem("truncated", f"JPEG cut off after {n} bytes, inside a header segment")
        if marker in _SOF and length >= 7:
            height, width = struct.unpack_from(">HH", data, pos + 3)
        pos += length
        if marker == _SOS:
            break
    # Entropy-coded data follows SOS; walking it costs a scan of every byte, while a picture cut
    # short almost never happens to end in FF D9, so the end marker is what tells.
    if not data.rstrip(_TRAILER).endswith(b"\xff\xd9"):
        return ImageProblem("truncated", f"JPEG cut off after {n} bytes (no end-of-image marker)")
    return ImageInfo("JPEG", width or None, height or None)


def _png(data: bytes) -> ImageInfo | ImageProblem:
    pos = len(PNG_MAGIC)
    n = len(data)
    width = height = None
    first = True
    view = memoryview(data)  # CRCs over slices of a large picture without copying them
    while True:
        if pos + 8 > n:
            return ImageProblem("truncated", f"PNG cut off after {n} bytes (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF:
            return ImageProblem("corrupt", f"PNG chunk length {length} at byte {pos}")
        end = pos + 8 + length + 4
        if end > n:
            return ImageProblem("truncated", f"PNG cut off after {n} bytes, inside a {kind.decode('latin-1')!r} chunk")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            return ImageProblem("corrupt", f"PNG chunk {kind.decode('latin-1')!r} at byte {pos} fails its CRC")
        if first:
            if kind != b"IHDR" or length != 13:
                return ImageProblem("corrupt", "PNG does not start with an IHDR chunk")
            width, height = struct.unpack_from(">II", data, pos + 8)
            first = False
        if kind == b"IEND":
            return ImageInfo("PNG", width or None, height or None)
        pos = end
