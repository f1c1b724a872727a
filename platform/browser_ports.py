"""Ports that browsers and `fetch` refuse to connect to over HTTP.

The Fetch standard's "bad port" list (ports of mail, IRC, X11 and other
services a web page must not be able to talk to).  Chromium, Firefox, Safari
and Node's built-in `fetch` (undici) all block them: a server listening on
6667 works with curl but every browser tab shows ERR_UNSAFE_PORT and
JupyterLab's client library fails with a bare "fetch failed".  The server
warns when it lands on one; tests never hand one out.
"""

from __future__ import annotations

#: From https://fetch.spec.whatwg.org/#bad-port (0 and 4190/6679 are the later additions).
BLOCKED: frozenset[int] = frozenset({
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95,
    101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179,
    389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601,
    636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566,
    6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
})


def browsers_refuse(port: int) -> bool:
    """True if browsers (and Node's `fetch`) will not open http://host:`port`/."""
    return port in BLOCKED
