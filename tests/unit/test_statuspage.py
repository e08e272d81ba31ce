"""The status page for the on-call phone: what it says, in what order, and what it never carries."""

from __future__ import annotations

import re

from netwatch.api.statuspage import render

DOC = {
    "instance": "noc-1",
    "sites": [
        {"id": "ch", "name": "City Hall", "kind": "facility", "wifi": None},
        {"id": "vp", "name": "Villa Parke <Community Center>", "kind": "park", "wifi": "down"},
        {"id": "empty", "name": "No devices here", "kind": "yard", "wifi": None},
    ],
    "devices": [
        {"id": "core", "site": "ch", "kind": "router", "state": "up"},
        {"id": "sw-vp", "site": "vp", "kind": "switch", "state": "unreachable"},
        {"id": "ap-vp", "site": "vp", "kind": "wifi_ap", "state": "unreachable"},
    ],
    "incidents": [
        {
            "severity": "critical",
            "summary": "span span-fs31-vp is down: 2 devices unreachable behind it",
            "since": "2026-11-22T09:00:00Z",
            "impact": {"count": 2, "by_site": {"villa-parke": 2}},
            "held": None,
        }
    ],
    "maintenance": [{"scope": "site brookside", "end": "2026-11-22T14:00:00+00:00", "reason": "AP firmware"}],
    "last_write_age_s": 4.2,
}


def test_the_page_says_what_is_wrong_first_in_words_and_refreshes_itself() -> None:
    html = render(DOC)
    assert '<html lang="en">' in html
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "<title>netwatch noc-1: 1 open incident(s), 1 site(s) not up</title>" in html
    assert "span span-fs31-vp is down: 2 devices unreachable behind it" in html
    assert "2 at villa-parke" in html
    assert "site brookside until 2026-11-22T14:00:00+00:00: AP firmware" in html
    assert "Newest data written to InfluxDB 4 s ago" in html
    # Sites worst first, the state in words (not colour alone), sites without devices left out.
    rows = re.findall(r"<tr><td>([^<]*)</td><td><span[^>]*>(\w+)</span>", html)
    assert rows == [("Villa Parke &lt;Community Center&gt;", "UNREACHABLE"), ("City Hall", "UP")]
    assert "No devices here" not in html
    # Names are escaped; nothing runs and nothing is fetched from elsewhere.
    assert "<Community" not in html
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert html.count("<caption>") == 2
    assert html.count('<th scope="col">') == 8


def test_a_quiet_night_says_so() -> None:
    html = render({**DOC, "incidents": [], "maintenance": [], "last_write_age_s": None})
    assert "<h2>Open incidents</h2>\n<p>None.</p>" in html
    assert "<h2>Maintenance in force</h2>\n<p>None.</p>" in html
    assert "Newest data written to InfluxDB never" in html
    spool_only = render({**DOC, "influxdb": False})
    assert "No InfluxDB configured: data is kept in netwatch's spool" in spool_only
