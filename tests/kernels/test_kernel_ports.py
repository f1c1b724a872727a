"""Kernel ports come from below the ephemeral range, free, and never twice while recent."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterator

import pytest
from zasperhub.platform.kernels.ports import (
    CHANNEL_PORTS,
    PortPicker,
    assign,
    ephemeral_range,
    parse_range,
)


def test_the_default_range_ends_below_the_ephemeral_range() -> None:
    low, high = parse_range("") or (0, 0)
    eph_low, eph_high = ephemeral_range()
    assert 10000 <= low < high < eph_low <= eph_high
    assert parse_range("20000-21000") == (20000, 21000)
    for bad in ("20000", "a-b", "80-2000", "30000-30050", "40000-30000", "60000-70000"):
        with pytest.raises(ValueError):
            parse_range(bad)


@contextlib.contextmanager
def _listening_in(low: int, high: int) -> Iterator[int]:
    """Listen on some port of low..high; yields it.  Not a fixed one: kernels started by
    other tests draw from the same default range and may hold any given port."""
    for port in range(low, high + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            sock.listen(1)
            yield port
            return
    raise AssertionError(f"no port of {low}-{high} is free")


def test_picks_are_free_distinct_and_not_handed_out_again() -> None:
    picker = PortPicker(25000, 25400, random.Random(7))
    with _listening_in(25000, 25400) as busy_port:
        seen: set[int] = set()
        for _ in range(40):
            ports = picker.pick(5)
            assert len(set(ports)) == 5 and all(25000 <= p <= 25400 for p in ports)
            assert busy_port not in ports, "a port something listens on is never picked"
            assert not seen & set(ports), "a recent port is not handed out twice"
            seen.update(ports)
    # 200 of 401 ports used: the rest still serve, and an exhausted range says so.
    low = _free_run(10)
    small = PortPicker(low, low + 9, random.Random(1))
    assert sorted(small.pick(10)) == list(range(low, low + 10))
    with pytest.raises(OSError, match=f"no free ports left in {low}-{low + 9}"):
        small.pick(1)


def _free_run(length: int) -> int:
    """The first of `length` consecutive ports bindable now, outside the ranges kernels use.

    Not a fixed range inside the kernels' default one: a kernel another test
    stopped leaves its ports in TIME_WAIT for a minute, and a plain bind of
    such a port fails.  Nothing in the suite binds ports out there by number.
    """
    start = max(ephemeral_range()[1] + 1, 61000)
    # A system whose ephemeral range reaches 65535 leaves nothing above it: then below the
    # 5000-9999 that tests/support/ports.py hands to test servers.
    for low in [*range(start, 65536 - length, length), *range(2000, 5000 - length, length)]:
        if all(PortPicker._bindable("127.0.0.1", p) for p in range(low, low + length)):
            return low
    raise AssertionError(f"no {length} consecutive free ports outside the kernels' ranges")


class FakeManager:
    transport = "tcp"
    ip = "127.0.0.1"
    cache_ports = True
    shell_port = iopub_port = stdin_port = hb_port = control_port = 0


def test_assign_fills_unset_ports_only() -> None:
    manager = FakeManager()
    picker = PortPicker(27000, 27999)
    assert assign(manager, picker)
    ports = [getattr(manager, name) for name in CHANNEL_PORTS]
    assert all(27000 <= p <= 27999 for p in ports) and manager.cache_ports is False
    assert not assign(manager, picker), "a restart keeps the ports it has"
    assert [getattr(manager, name) for name in CHANNEL_PORTS] == ports
    ipc = FakeManager()
    ipc.transport = "ipc"
    assert not assign(ipc, picker) and ipc.shell_port == 0


async def test_a_kernel_starts_on_ports_from_the_range(tmp_path) -> None:
    from zasperhub.platform.kernels.registry import KernelRegistry

    registry = KernelRegistry(root_dir=str(tmp_path), kernel_port_range="28000-28999")
    try:
        kernel = registry.get(await registry.start_kernel())
        info = kernel.manager.get_connection_info()
        assert all(28000 <= info[name] <= 28999 for name in CHANNEL_PORTS), info
        assert await kernel.wait_ready(60)
        assert (await kernel.run_silent("x = 1", 30))["status"] == "ok"
    finally:
        await registry.shutdown_all()


@pytest.mark.parametrize("transport", ["zmtp", "pyzmq"])
async def test_a_curve_encrypted_kernel_works_over_either_setting(tmp_path, transport) -> None:
    """jupyter_client's transport_encryption: the bridge connects with the kernel's CurveZMQ keys."""
    import zmq
    from traitlets.config import Config
    from zasperhub.platform.kernels.registry import KernelRegistry

    if not zmq.has("curve"):
        pytest.skip("libzmq without CurveZMQ")
    config = Config({"KernelManager": {"transport_encryption": "required"}})
    registry = KernelRegistry(root_dir=str(tmp_path), kernel_transport=transport, config=config)
    try:
        kernel = registry.get(await registry.start_kernel())
        assert kernel.manager.get_connection_info().get("curve_publickey")
        assert await kernel.wait_ready(60)
        assert (await kernel.run_silent("x = 2", 30))["status"] == "ok"
    finally:
        await registry.shutdown_all()


def test_a_malformed_range_stops_the_server_with_one_line(tmp_path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "zasperhub.platform.cli", "--no-browser", "--port=9", f"--root-dir={tmp_path}",
         "--KernelRegistry.kernel_port_range=10000"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "zasperhub: error: kernel port range must look like LOW-HIGH, not '10000'"
