"""The idle culler runs as a hub service and stops idle servers, not busy ones.

Activity comes from the servers' own reports (`JUPYTERHUB_ACTIVITY_INTERVAL`
is short here); the proxy poll stays at its 5-minute default so it cannot be
what keeps the busy user alive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.hub.hubproc import HubProcess

pytestmark = pytest.mark.hub

# Long enough that a spawn on a loaded machine does not count as idleness.
IDLE_TIMEOUT = 20


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    config = """
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "2"}
"""
    hub = HubProcess(tmp_path_factory.mktemp("hub-culler"), idle_timeout=IDLE_TIMEOUT, extra_config=config)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


def test_culler_stops_idle_server_and_keeps_busy_one(hub: HubProcess) -> None:
    assert f"enable_idle_culler(c, timeout={IDLE_TIMEOUT})" in hub.config_path.read_text()
    # Start "idle" without waiting for it: under load it may be culled before a
    # poll sees it ready; the culler's own log line proves it ran and was culled.
    hub.ensure_user("idle")
    assert hub.api("POST", "/users/idle/server").status_code in (201, 202)
    hub.start_server("busy")
    busy = httpx.Client(base_url=f"{hub.url}/user/busy", headers={"Authorization": f"token {hub.user_token('busy')}"}, timeout=30)
    culled_after = None
    started = time.monotonic()
    # Bounded: the idle server must go within timeout + a few culler rounds.
    while time.monotonic() - started < IDLE_TIMEOUT * 5:
        assert busy.get("/api/contents").status_code == 200
        if "Culling server idle " in hub.log() and not hub.server_ready("idle"):
            culled_after = time.monotonic() - started
            break
        time.sleep(1.5)
    assert culled_after is not None, f"idle server was not culled:\n{hub.log()[-3000:]}"
    assert "User idle took" in hub.log()  # it had started (the culler skips pending servers anyway)
    # Keep the busy user busy through one more full timeout: still running.
    until = time.monotonic() + IDLE_TIMEOUT + 4
    while time.monotonic() < until:
        assert busy.get("/api/contents").status_code == 200
        time.sleep(1.5)
    assert hub.server_ready("busy"), hub.log()[-3000:]
