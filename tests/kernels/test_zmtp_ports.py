"""A kernel whose port another process took before it could bind it still comes up (either transport).

jupyter_client picks a kernel's ports (bind to port 0, close), then the
kernel binds them a moment later; in between any other process can take
one.  An ipykernel that loses its **iopub** port that way does not exit: its
`close()` at exit never closes the unbound iopub socket, so
`Context.term()` waits for it for ever.  The process stays alive, the
server's monitor sees nothing wrong, and the kernel stayed `starting` for
good — the "kernel over ZMTP never becomes ready" seen in full test runs,
where many servers start kernels at once.  It is not transport-specific.

Here a listener of the test holds the port jupyter_client hands out as the
first kernel's iopub port, deterministically.  The server must stop the deaf
kernel after `kernel_info_timeout` and restart it on new ports.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator

import psutil
import pytest
from jupyter_client.connect import LocalPortCache
from zasperhub.platform.kernels import kernel as kernel_module
from zasperhub.platform.kernels import zmqio

#: The order LocalProvisioner asks LocalPortCache for a kernel's ports.
PORT_ORDER = ("shell", "iopub", "stdin", "hb", "control")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port held by "another process": listening, never speaking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("transport", "port_range"), [("zmtp", ""), ("pyzmq", ""), ("pyzmq", "ephemeral")]
)
async def test_kernel_whose_iopub_port_was_taken_is_restarted_on_new_ports(
    tmp_path, monkeypatch, taken_port, transport, port_range
):
    from zasperhub.platform.kernels.ports import PortPicker
    from zasperhub.platform.kernels.registry import KernelRegistry

    if port_range == "ephemeral":
        # jupyter_client's own picks (bind to port 0), one port at a time.
        pick = LocalPortCache.find_available_port
        calls = 0

        def find_available_port(self: LocalPortCache, ip: str) -> int:
            nonlocal calls
            calls += 1
            if calls == 1 + PORT_ORDER.index("iopub"):
                return taken_port  # what another process's bind does between the pick and the kernel's bind
            return pick(self, ip)

        monkeypatch.setattr(LocalPortCache, "find_available_port", find_available_port)
    else:
        # The server's own picks (below the ephemeral range), five at a time.
        pick_many = PortPicker.pick
        first = True

        def pick_ports(self: PortPicker, count: int, ip: str = "127.0.0.1") -> list[int]:
            nonlocal first
            ports = pick_many(self, count, ip)
            if first:
                first = False
                ports[PORT_ORDER.index("iopub")] = taken_port
            return ports

        monkeypatch.setattr(PortPicker, "pick", pick_ports)
    # The deaf kernel closed its other sockets: waiting 30 s for them to listen only slows the test.
    monkeypatch.setattr(kernel_module, "wait_listening", functools.partial(zmqio.wait_listening, timeout=3.0))
    registry = KernelRegistry(
        root_dir=str(tmp_path), kernel_transport=transport, kernel_info_timeout=6.0, poll_interval=0.5,
        kernel_port_range=port_range,
    )
    try:
        started = time.monotonic()
        kid = await registry.start_kernel()
        kernel = registry.get(kid)
        first_pid = kernel.pid
        assert kernel.manager.iopub_port == taken_port
        assert await kernel.wait_ready(60), f"still {kernel.execution_state} after {time.monotonic() - started:.0f}s"
        assert kernel.pid != first_pid
        assert taken_port not in [kernel.manager.get_connection_info()[f"{c}_port"] for c in PORT_ORDER]
        # The deaf process was stopped, not left behind.
        assert first_pid is not None and (not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE)
        reply = await kernel.run_silent("x = 6 * 7", 30)
        assert reply["status"] == "ok"
    finally:
        await registry.shutdown_all()
