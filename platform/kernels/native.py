"""The compiled hot path (`_native.c`): whether it is built, whether it is on, and its entry points.

`_native` is an optional extension (setup.py).  It is used when it was built
and neither `--KernelRegistry.native_path=False` nor `ZASPERHUB_NATIVE=0`
turned it off; one switch for the whole process (`configure`), so "off"
means every message takes the pure-Python path, which speaks the same
protocol.

Kernel -> client it applies to kernels reached over the ZMTP transport
(zmtp.py) with HMAC-SHA256 signatures or none (the Jupyter default), and to
clients on a direct WebSocket (ws_direct.py): each read from a kernel is
parsed, verified, routed and encoded for every client in one C call;
anything uncommon is handed to `ManagedKernel._on_kernel_message` as before
(the comment at the top of `_native.c` has the rule).  Client -> kernel, the
usual frame is unmasked (`ws_message`), v1-decoded (`v1_decode`), signed
(`hmac`) and ZMTP-framed (`zmtp_message`) in one call each.  Callers read
those module attributes when they use them: None means the Python code.

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

#: `ws_message(data, max_size)`: the message if `data` is exactly one final masked data frame, else None.
ws_message: Callable[[bytes, int], str | bytes | None] | None = None
#: `v1_decode(frame)`: (channel, parts) of a valid v1 frame; None for anything else (or large buffers).
v1_decode: Callable[[bytes], tuple[str, list[bytes]] | None] | None = None
#: `zmtp_message(parts)`: one multipart message as ZMTP frames in one bytes object.
zmtp_message: Callable[[list[bytes]], bytes] | None = None

_enabled = False


def configure(enabled: bool) -> None:
    """Turn the compiled path on (where built, and unless `ZASPERHUB_NATIVE=0`) or off, process-wide."""
    global _enabled, ws_message, v1_decode, zmtp_message
    _enabled = enabled and _native is not None and os.environ.get("ZASPERHUB_NATIVE", "1") != "0"
    ws_message = _native.ws_message if _enabled else None
    v1_decode = _native.v1_decode if _enabled else None
    zmtp_message = _native.zmtp_message if _enabled else None


def available() -> bool:
    """Whether the compiled path is in use."""
    return _enabled


def _log_routing_error(exc: BaseException) -> None:
    log.error("Error handling a message from a kernel", exc_info=exc)


def make_router(kernel: Any, key: bytes, scheme: str, session: str,
                fallback: Callable[[str, list[bytes]], None]) -> Any | None:
    """A Router for one kernel's sockets, or None where the compiled path does not apply."""
    if not _enabled or (key and scheme != "hmac-sha256"):
        return None
    return _native.Router(kernel, key, session, fallback, _log_routing_error)


def make_reader(router: Any, channel: str, on_command: Callable[[bytes], None]) -> Any:
    """A ZmtpReader for one channel of a kernel whose sockets have a Router."""
    return _native.ZmtpReader(router, channel, on_command)


def hmac(key: bytes) -> Any | None:
    """A compiled HMAC-SHA256 signer (`.sign(parts)`: hex, or None for large messages), or None."""
    return _native.Hmac(key) if _enabled else None


def make_sink(write: Callable[[bytes], None], buffered: Callable[[], int], on_backlog: Callable[[int], None],
              limit: int, v1: bool) -> Any | None:
    """A ClientSink for one direct WebSocket, or None without the compiled path."""
    return _native.ClientSink(write, buffered, on_backlog, limit, v1) if _enabled else None


configure(True)  # until a KernelRegistry says otherwise
