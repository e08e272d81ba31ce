"""Tiny, valid JPEG and PNG files built byte by byte (Pillow is not a dependency).

Both were checked with real decoders when written: GStreamer's jpegdec decodes :func:`tiny_jpeg`
(16x8 -> every pixel 128) and zlib + the PNG spec give :func:`tiny_png`'s pixels back.
"""

from __future__ import annotations

import struct
import zlib


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def tiny_jpeg(width: int = 16, height: int = 8) -> bytes:
    """A baseline grayscale JPEG of flat mid-grey: every 8x8 block is DC 0 and EOB, one-code Huffman tables."""
    dqt = _segment(0xDB, b"\x00" + bytes([1] * 64))
    sof = _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    dht_dc = _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    dht_ac = _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = "00" * blocks  # DC category 0, then end-of-block, for each block
    bits += "1" * (-len(bits) % 8)
    scan = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    return b"\xff\xd8" + dqt + sof + dht_dc + dht_ac + sos + scan + b"\xff\xd9"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """An 8-bit RGB PNG, every pixel (0x80, 0x40, 0x20)."""
    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )
