"""Ports browsers refuse: the list matches Node's fetch, tests never draw one, the server warns on one."""

from __future__ import annotations

import json
import logging
import random
import shutil
import socket
import subprocess

import pytest
from zasperhub.platform.browser_ports import BLOCKED, browsers_refuse
from zasperhub.platform.kernels.ports import PortPicker

# Every port of the range fetched at once; a refused one fails with "bad port"
# before any connection is tried, a free one with ECONNREFUSED.
_PROBE = """
const [low, high] = process.argv.slice(1).map(Number);
const refused = [];
const probes = [];
for (let p = low; p <= high; p++) {
  probes.push(fetch(`http://127.0.0.1:${p}/`, {signal: AbortSignal.timeout(5000)}).catch((e) => {
    if (String(e.cause && e.cause.message).includes('bad port')) refused.push(p);
  }));
}
await Promise.all(probes);
console.log(JSON.stringify(refused.sort((a, b) => a - b)));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is installed by scripts/install-test-deps.sh")
def test_the_list_is_what_nodes_fetch_refuses_across_the_test_port_range() -> None:
    low, high = 5000, 10100  # tests' servers draw from 5000-9999; 10080 is the next one above
    proc = subprocess.run(["node", "--input-type=module", "-e", _PROBE, str(low), str(high)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    refused = json.loads(proc.stdout)
    assert refused, "Node's fetch refuses some ports in this range (6667 at least)"
    assert refused == sorted(p for p in BLOCKED if low <= p <= high)


def test_a_picker_never_hands_out_an_avoided_port() -> None:
    picker = PortPicker(6660, 6700, random.Random(3), avoid=BLOCKED)
    drawn: list[int] = []
    with pytest.raises(OSError, match="no free ports left"):
        while True:
            drawn += picker.pick(1)
    assert drawn and not [p for p in drawn if browsers_refuse(p)]
    assert not picker.take([6667]), "an avoided port is refused even when asked for by number"


def test_the_server_warns_when_it_listens_where_browsers_refuse() -> None:
    from zasperhub.platform.app import ZasperApp

    port = next((p for p in sorted(BLOCKED) if p > 1024 and PortPicker._bindable("127.0.0.1", p)), None)
    if port is None:
        pytest.skip("every unprivileged blocked port is in use on this machine")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("zasperhub")
    logger.addHandler(handler)
    try:
        app = ZasperApp(ip="127.0.0.1", port=port)
        sockets = app.bind()
        for sock in sockets:
            sock.close()
        quiet = ZasperApp(ip="127.0.0.1", port=0)
        for sock in quiet.bind():
            sock.close()
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"port {port}" in warnings[0] and "--port" in warnings[0]
    assert isinstance(sockets[0], socket.socket)
