"""The compiled kernel -> client path (`_native.c`), when it was built, and when it applies.

`_native` is an optional extension (setup.py): where it could not be built,
or with `--KernelRegistry.native_path=False` / `ZASPERHUB_NATIVE=0`, every
message takes the pure-Python path, which speaks the same protocol.

It applies to kernels reached over the ZMTP transport (zmtp.py) with
HMAC-SHA256 signatures or none (the Jupyter default), and to clients on a
direct WebSocket (ws_direct.py) — the common case.  For those, each read
from a kernel is parsed, verified, routed and encoded for every client in
one C call; anything uncommon is handed to `ManagedKernel._on_kernel_message`
as before (see the comment at the top of `_native.c` for the rule).

What the Router reads of the kernel, by attribute (kernel.py keeps these
names): `_ready` (an asyncio.Event), `_silent`, `_connections`,
`_by_session` and `_inflight` (dicts, mutated in place), `_overloaded`; it
sets `execution_state` and `last_activity`, and calls `_answered`.  Each
connection's `native_sink` is its ClientSink, or None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger("zasperhub.kernels")

try:
    from zasperhub.platform.kernels import _native
except ImportError:  # not built (no C compiler when installed): the Python path serves
    _native = None  # type: ignore[assignment]

#: The extension's own ProtocolError (a ValueError), or a class nothing raises.
ProtocolError: type[Exception] = _native.ProtocolError if _native is not None else type("ProtocolError", (ValueError,), {})


def available() -> bool:
    """Whether the compiled path is built and not switched off by `ZASPERHUB_NATIVE=0`."""
    return _native is not None and os.environ.get("ZASPERHUB_NATIVE", "1") != "0"


def _log_routing_error(exc: BaseException) -> None:
    log.error("Error handling a message from a kernel", exc_info=exc)


def make_router(kernel: Any, key: bytes, scheme: str, session: str,
                fallback: Callable[[str, list[bytes]], None]) -> Any | None:
    """A Router for one kernel's sockets, or None where the compiled path does not apply."""
    if not available() or (key and scheme != "hmac-sha256"):
        return None
    assert _native is not None
    return _native.Router(kernel, key, session, fallback, _log_routing_error)


def make_reader(router: Any, channel: str, on_command: Callable[[bytes], None]) -> Any:
    """A ZmtpReader for one channel of a kernel whose sockets have a Router."""
    assert _native is not None
    return _native.ZmtpReader(router, channel, on_command)


def hmac(key: bytes) -> Any | None:
    """A compiled HMAC-SHA256 signer (`.sign(parts)`: hex, or None for large messages), or None."""
    return _native.Hmac(key) if available() and _native is not None else None


def zmtp_message(parts: list[bytes]) -> bytes | None:
    """One multipart message as ZMTP frames in one bytes object, or None without the compiled path."""
    return _native.zmtp_message(parts) if _native is not None else None


def ws_message_parser() -> Callable[[bytes, int], str | bytes | None] | None:
    """`ws_message(data, max_size)`: the message if `data` is exactly one final masked data frame, else None."""
    return _native.ws_message if available() and _native is not None else None


def v1_decoder() -> Callable[[bytes], tuple[str, list[bytes]] | None] | None:
    """`v1_decode(frame)`: (channel, parts) of a valid v1 frame, None for anything else (or large buffers)."""
    return _native.v1_decode if available() and _native is not None else None


def make_sink(write: Callable[[bytes], None], buffered: Callable[[], int], on_backlog: Callable[[int], None],
              limit: int, v1: bool) -> Any | None:
    """A ClientSink for one direct WebSocket, or None without the compiled path."""
    if not available():
        return None
    assert _native is not None
    return _native.ClientSink(write, buffered, on_backlog, limit, v1)
