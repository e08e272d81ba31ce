"""Complete-picture checks: a JPEG or PNG cut short or corrupted is told apart from a good one."""

from __future__ import annotations

import pytest

from netwatch.probes.images import ImageInfo, ImageProblem, inspect_image
from tests.unit.probes.pictures import png_chunk, tiny_jpeg, tiny_png


def test_complete_jpeg_and_png_with_dimensions() -> None:
    """Good pictures are recognised with the width and height their headers give."""
    assert inspect_image(tiny_jpeg(16, 8)) == ImageInfo("JPEG", 16, 8)
    assert inspect_image(tiny_png(3, 2)) == ImageInfo("PNG", 3, 2)
    assert str(inspect_image(tiny_jpeg(640, 480))) == "JPEG 640x480"


def test_jpeg_padding_after_end_marker_is_fine() -> None:
    """Cameras pad a JPEG after its end marker; that does not make it incomplete."""
    assert isinstance(inspect_image(tiny_jpeg() + b"\x00\x00\r\n"), ImageInfo)


def test_every_cut_of_a_jpeg_is_truncated() -> None:
    """A JPEG cut anywhere (in the signature, a header segment or the scan) is truncated, not accepted."""
    data = tiny_jpeg(256, 64)
    for cut in range(1, len(data)):
        found = inspect_image(data[:cut])
        assert isinstance(found, ImageProblem), cut
        assert found.kind == "truncated", (cut, found.detail)


def test_every_cut_of_a_png_is_truncated() -> None:
    """A PNG cut anywhere before the end of IEND is truncated."""
    data = tiny_png()
    for cut in range(1, len(data)):
        found = inspect_image(data[:cut])
        assert isinstance(found, ImageProblem), cut
        assert found.kind == "truncated", (cut, found.detail)


def test_png_bad_crc_is_corrupt() -> None:
    """A flipped byte inside a PNG chunk fails its CRC: corrupt."""
    data = bytearray(tiny_png())
    data[40] ^= 0xFF
    found = inspect_image(bytes(data))
    assert isinstance(found, ImageProblem)
    assert found.kind == "corrupt"


def test_png_without_iend_but_long_is_truncated() -> None:
    """A PNG whose chunks end cleanly but without IEND is still incomplete."""
    data = tiny_png()
    without_iend = data[: -len(png_chunk(b"IEND", b""))]
    found = inspect_image(without_iend)
    assert isinstance(found, ImageProblem)
    assert found.kind == "truncated"


@pytest.mark.parametrize(
    "body",
    [b"<!DOCTYPE html><html><body>Error 500</body></html>", b"", b"GIF89a....", b'{"error": "busy"}'],
)
def test_other_bodies_are_not_images(body: bytes) -> None:
    """HTML error pages, JSON, GIF and an empty body are not JPEG or PNG."""
    found = inspect_image(body)
    assert isinstance(found, ImageProblem)
    assert found.kind == "not_image"
