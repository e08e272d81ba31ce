"""Camera pictures for the lab: valid baseline JPEGs made in code, as large as a config asks.

netwatch's snapshot check wants a complete JPEG of at least ``min_bytes`` (20000 in the example
config, for real cameras). A flat picture of camera size codes to a few hundred bytes (each 8x8
block is a handful of bits), so the lab's picture has texture: every block gets a brightness
from a gradient and some AC coefficients from a seeded generator. More coefficients per block
make more bytes, and :func:`picture` takes the fewest that reach the size asked.

The Huffman tables are small ones of our own, declared in the file's DHT segments as the format
allows (a decoder never assumes the standard tables): 12 DC categories and, for AC, end-of-block
plus run-0 values of sizes 1 to 4, each a fixed-length code. Every coefficient then costs a known
number of bits, and the encoder stays short. No Pillow: the lab must run without it.
"""

from __future__ import annotations

import random
import struct
from functools import cache
from typing import Final

#: A typical camera stream's still is 640x480; with these dimensions the detail needed for 20 kB
#: is about 4 coefficients per block, far below the 63 a block holds.
WIDTH: Final = 640
HEIGHT: Final = 480
#: The example config's min_bytes for real cameras, so a lab camera passes it unchanged.
DEFAULT_MIN_BYTES: Final = 20_000

_DC_CODE_BITS: Final = 4  # 12 categories in 4-bit codes 0000..1011
_AC_CODE_BITS: Final = 3  # EOB and run-0 sizes 1..4 in 3-bit codes 000..100
_AC_SIZE: Final = 4  # every AC value has magnitude 8..15: size 4, 7 bits with its code
_QUANT: Final = 4  # one quantiser for all 64 coefficients


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def _fixed_length_table(table_class: int, symbols: list[int], length: int) -> bytes:
    """A DHT payload whose codes all have ``length`` bits (canonical order: symbol i gets code i)."""
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes([table_class << 4]) + bytes(counts) + bytes(symbols)


class _Bits:
    """Collects scan bits MSB first; a 0xFF byte is followed by 0x00 (byte stuffing, T.81 F.1.2.3)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._n = 0

    def put(self, value: int, count: int) -> None:
        self._acc = (self._acc << count) | (value & ((1 << count) - 1))
        self._n += count
        while self._n >= 8:
            self._n -= 8
            byte = (self._acc >> self._n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self._acc &= (1 << self._n) - 1

    def finish(self) -> bytes:
        if self._n:
            self.put((1 << (8 - self._n)) - 1, 8 - self._n)  # pad with 1s
        return bytes(self.out)


def _category(value: int) -> int:
    return abs(value).bit_length()


def _amplitude(value: int, size: int) -> int:
    # Negative values are sent as value - 1 in ``size`` bits (T.81 F.1.2.1).
    return value if value >= 0 else value + (1 << size) - 1


def encode(width: int, height: int, detail: int, *, seed: int = 0) -> bytes:
    """Return a grey JPEG of ``width`` x ``height`` with ``detail`` (0-63) AC coefficients per block."""
    if not 1 <= width <= 65535 or not 1 <= height <= 65535:
        raise ValueError("a JPEG is 1 to 65535 pixels each way")
    if not 0 <= detail <= 63:
        raise ValueError("a block has 63 AC coefficients")
    rng = random.Random(seed)
    header = (
        b"\xff\xd8"
        + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + _segment(0xDB, b"\x00" + bytes([_QUANT] * 64))
        + _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + _segment(0xC4, _fixed_length_table(0, list(range(12)), _DC_CODE_BITS))
        + _segment(0xC4, _fixed_length_table(1, [0x00, 0x01, 0x02, 0x03, 0x04], _AC_CODE_BITS))
        + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    )
    bits = _Bits()
    across, down = (width + 7) // 8, (height + 7) // 8
    previous = 0
    for by in range(down):
        for bx in range(across):
            # A diagonal gradient with bands: brightness -> DC = 8 * (mean - 128) / quantiser.
            mean = 40 + (bx * 150) // across + (by * 50) // down + (30 if (by // 4) % 2 else 0)
            dc = (8 * (mean - 128)) // _QUANT
            diff = dc - previous
            previous = dc
            size = _category(diff)
            bits.put(size, _DC_CODE_BITS)
            bits.put(_amplitude(diff, size), size)
            for _ in range(detail):
                magnitude = rng.randrange(8, 16)
                value = magnitude if rng.random() < 0.5 else -magnitude
                bits.put(_AC_SIZE, _AC_CODE_BITS)  # symbol 0x04: run 0, size 4
                bits.put(_amplitude(value, _AC_SIZE), _AC_SIZE)
            if detail < 63:
                bits.put(0, _AC_CODE_BITS)  # end of block
    return header + bits.finish() + b"\xff\xd9"


@cache
def picture(min_bytes: int = DEFAULT_MIN_BYTES, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """Return the lab's camera picture: the least detailed one of at least ``min_bytes``.

    Cached: every camera of a size shares one picture, so a city of cameras costs one encode.
    """
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    # Each coefficient adds 7 bits per block: start from the estimate, then step up to the size.
    detail = max(0, min(63, (min_bytes * 8 // blocks - 8) // (_AC_CODE_BITS + _AC_SIZE)))
    while True:
        data = encode(width, height, detail)
        if len(data) >= min_bytes:
            return data
        if detail == 63:
            raise ValueError(f"a {width}x{height} picture holds at most {len(data)} bytes; ask for a larger one")
        detail += 1
