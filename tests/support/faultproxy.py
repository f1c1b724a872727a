"""A loopback TCP proxy that can break connections mid-transfer (byte-level fault injection).

Put it between a client and a real server to make a store "go away" in the
middle of a request, deterministically::

    with FaultProxy(("127.0.0.1", s3_port)) as proxy:
        proxy.cut_after(1 << 20)   # drop every connection once 1 MiB went upstream
        ...                         # the client sees a broken transfer
        proxy.heal()                # pass everything again
"""

from __future__ import annotations

import socket
import threading


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `target`; can cut client→server streams after N bytes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._limit: int | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self.cuts = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, nbytes: int) -> None:
        """From now on, new and open connections are reset once `nbytes` went upstream on them."""
        self._limit = nbytes

    def heal(self) -> None:
        self._limit = None

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                sock.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        sent = 0
        try:
            src.settimeout(None)
            while not self._stopping.is_set():
                data = src.recv(65536)
                if not data:
                    break
                limit = self._limit if upstream else None
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    self.cuts += 1
                    # Reset both sides: the client sees the connection die mid-request.
                    for sock in (src, dst):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
