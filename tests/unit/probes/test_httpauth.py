"""Answers to HTTP/RTSP auth challenges: the RFC examples, challenge parsing, scheme choice."""

from __future__ import annotations

import base64

import pytest

from netwatch.probes.httpauth import Challenge, Credentials, choose, parse_challenges

MUFASA = Credentials("Mufasa", "Circle Of Life")


def params(header: str) -> dict[str, str]:
    (parsed,) = parse_challenges([header])
    return parsed.params


def test_rfc2617_digest_example() -> None:
    """RFC 2617 section 3.5: the published response for Mufasa / 'Circle Of Life'."""
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    authn = choose(parse_challenges([challenge]), MUFASA, "auto", cnonce="0a4f113b")
    assert authn is not None
    answer = params(authn.header("GET", "/dir/index.html"))
    assert answer["response"] == "6629fae49393a05397450978507c4ef1"
    assert answer["nc"] == "00000001"
    assert answer["qop"] == "auth"
    assert answer["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    # A second request with the same nonce counts up, so a camera does not take it for a replay.
    assert params(authn.header("GET", "/dir/index.html"))["nc"] == "00000002"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_digest_examples(algorithm: str, response: str) -> None:
    """RFC 7616 section 3.9.1: MD5 and SHA-256 responses for Mufasa / 'Circle of Life'."""
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    creds = Credentials("Mufasa", "Circle of Life")
    authn = choose(parse_challenges([challenge]), creds, "auto", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert authn is not None
    assert params(authn.header("GET", "/dir/index.html"))["response"] == response


def test_several_challenges_in_one_header() -> None:
    """One header may carry several challenges; quoted commas and escapes stay inside their value."""
    found = parse_challenges(['Digest realm="a, b", nonce="x\\"y", algorithm=SHA-256, Basic realm="cam"', "Bearer"])
    assert found == [
        Challenge("digest", {"realm": "a, b", "nonce": 'x"y', "algorithm": "SHA-256"}),
        Challenge("basic", {"realm": "cam"}),
        Challenge("bearer", {}),
    ]


def test_auto_prefers_strongest_digest_over_basic() -> None:
    """With Basic, MD5 and SHA-256 offered, auto answers SHA-256 Digest."""
    offered = parse_challenges(
        ['Basic realm="c"', 'Digest realm="c", nonce="1"', 'Digest realm="c", nonce="2", algorithm=SHA-256']
    )
    authn = choose(offered, MUFASA, "auto")
    assert authn is not None
    assert "algorithm=SHA-256" in authn.header("DESCRIBE", "rtsp://cam/s")


def test_modes_limit_schemes() -> None:
    """digest never answers Basic; basic never answers Digest; an unknown algorithm is not answered."""
    basic_only = parse_challenges(['Basic realm="c"'])
    digest_only = parse_challenges(['Digest realm="c", nonce="1"'])
    assert choose(basic_only, MUFASA, "digest") is None
    assert choose(digest_only, MUFASA, "basic") is None
    assert choose(parse_challenges(['Digest realm="c", nonce="1", algorithm=SHA-1024']), MUFASA, "auto") is None
    authn = choose(basic_only, MUFASA, "auto")
    assert authn is not None
    assert authn.header("GET", "/") == "Basic " + base64.b64encode(b"Mufasa:Circle Of Life").decode()


def test_credentials_repr_hides_them() -> None:
    """A stray log of the credentials object shows neither user nor password."""
    assert "Circle" not in repr(MUFASA)
    assert "Mufasa" not in repr(MUFASA)
