"""The one aiohttp session HTTP-speaking probes share, created on first use and closed with the resources."""

from __future__ import annotations

import aiohttp

from netwatch.probes.base import ProbeResources

_KEY = "aiohttp_session"


def http_session(resources: ProbeResources) -> aiohttp.ClientSession:
    """Return the shared session, creating it (inside the running loop) the first time.

    Probes keep no cookies: one device's session cookie must not ride along to the next check,
    nor to another device on the same host. Proxies from the environment are ignored (aiohttp's
    default), since cameras and portals are checked from the monitoring host itself.
    """
    session = resources.shared.get(_KEY)
    if not isinstance(session, aiohttp.ClientSession) or session.closed:
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "netwatch"},
            raise_for_status=False,
        )
        resources.shared[_KEY] = session
        resources.closers.append(session.close)
    return session
