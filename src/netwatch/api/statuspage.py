"""``GET /status``: one page for the on-call phone, served by the daemon itself.

Sites with their state (worst device first), the open incidents with what is dark behind them,
maintenance in force, and how old the newest data is. Plain HTML with its own small stylesheet:
no JavaScript, no external assets, so it loads on a phone over a poor link and works when the
internet does not. It refreshes itself every 30 s (``<meta http-equiv="refresh">``). Accessible:
state is said in words as well as colour, colours keep a contrast of 7:1 or more on white, tables
have captions and header cells, and the page has a language and a title. Reads follow the API's
rule: loopback open, the bearer token from anywhere else.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

#: Worst first; each with a text colour of at least 7:1 contrast on white (WCAG AAA).
_ORDER = ("down", "unreachable", "degraded", "maintenance", "unknown", "up")
_COLOUR = {
    "down": "#9b0000",
    "unreachable": "#6a1b9a",
    "degraded": "#7a4a00",
    "maintenance": "#004a7f",
    "unknown": "#404040",
    "up": "#1b5e20",
}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:0.75rem;color:#111;background:#fff}
h1{font-size:1.3rem;margin:0 0 .25rem} h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;width:100%;table-layout:fixed} caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #bbb;padding:.35rem .4rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
.state{font-weight:700} .meta{color:#333;font-size:.9rem}
"""


def _state(state: str) -> str:
    colour = _COLOUR.get(state, "#404040")
    return f'<span class="state" style="color:{colour}">{escape(state.upper())}</span>'


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _data_line(doc: dict[str, Any]) -> str:
    if doc.get("influxdb") is False:
        return "No InfluxDB configured: data is kept in netwatch's spool"
    return f"Newest data written to InfluxDB {_age(doc.get('last_write_age_s'))}"


def render(doc: dict[str, Any], *, refresh_s: int = 30) -> str:
    """Return the page for a state document (``/api/v1/state``'s, with incidents and maintenance)."""
    by_site: dict[str, Counter[str]] = {}
    for d in doc.get("devices", []):
        by_site.setdefault(d["site"], Counter())[d["state"]] += 1
    sites = []
    for site in doc.get("sites", []):
        counts = by_site.get(site["id"], Counter())
        if not counts:
            continue
        worst = next((s for s in _ORDER if counts[s]), "unknown")
        detail = ", ".join(f"{counts[s]} {s}" for s in _ORDER if counts[s])
        wifi = site.get("wifi")
        sites.append((_ORDER.index(worst), site["name"], worst, detail, wifi))
    sites.sort()
    incidents = doc.get("incidents", [])
    windows = doc.get("maintenance", [])
    bad = sum(1 for s in sites if s[2] != "up")
    title = f"netwatch {doc.get('instance', '')}: {len(incidents)} open incident(s), {bad} site(s) not up"
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{refresh_s}">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{_data_line(doc)}; this page refreshes every {refresh_s} s.</p>',
        "<h2>Open incidents</h2>",
    ]
    if incidents:
        out.append(
            '<table><caption>Incidents, most severe first</caption><thead><tr><th scope="col">Severity</th>'
            '<th scope="col">What</th><th scope="col">Since</th><th scope="col">Behind it</th></tr></thead><tbody>'
        )
        for i in incidents:
            impact = i.get("impact") or {}
            behind = (
                ", ".join(f"{n} at {escape(site)}" for site, n in (impact.get("by_site") or {}).items()) or "nothing"
            )
            held = f" (held: {escape(str(i['held']))})" if i.get("held") else ""
            out.append(
                f"<tr><td>{escape(str(i['severity']))}</td><td>{escape(str(i['summary']))}{held}</td>"
                f"<td>{escape(str(i.get('since') or ''))}</td><td>{behind}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>None.</p>")
    out.append("<h2>Maintenance in force</h2>")
    if windows:
        out.append("<ul>")
        for w in windows:
            out.append(
                f"<li>{escape(str(w['scope']))} until {escape(str(w['end']))}"
                + (f": {escape(str(w['reason']))}" if w.get("reason") else "")
                + "</li>"
            )
        out.append("</ul>")
    else:
        out.append("<p>None.</p>")
    out.append(
        '<h2>Sites</h2><table><caption>Sites, worst first</caption><thead><tr><th scope="col">Site</th>'
        '<th scope="col">State</th><th scope="col">Devices</th><th scope="col">Public WiFi</th></tr></thead><tbody>'
    )
    for _, name, worst, detail, wifi in sites:
        out.append(
            f"<tr><td>{escape(name)}</td><td>{_state(worst)}</td><td>{escape(detail)}</td>"
            f"<td>{_state(wifi) if wifi else ''}</td></tr>"
        )
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"
