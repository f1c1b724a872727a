"""A minimal Jupyter kernel that answers every request at once.

It exists for the server-ceiling scenario: with ipykernel the kernel burns
most of the CPU, so the server's own maximum message rate is hidden.  This
kernel speaks the Jupyter ZMQ protocol (shell, control, stdin, iopub,
heartbeat; HMAC-signed messages) and, for ``execute_request``, publishes
busy → execute_input → execute_result → idle and replies, doing no work.

Run as ``python echo_kernel.py -f CONNECTION_FILE`` (see ``install_kernelspec``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import zmq

DELIM = b"<IDS|MSG>"
KERNEL_NAME = "bench-echo"
PROTOCOL_VERSION = "5.3"


class EchoKernel:
    """Single-threaded kernel loop over one zmq poller."""

    def __init__(self, connection: dict[str, Any]) -> None:
        self.ctx = zmq.Context()
        key = connection.get("key", "").encode()
        scheme = connection.get("signature_scheme", "hmac-sha256")
        digest = getattr(hashlib, scheme.split("-", 1)[1])
        self.signer = hmac.new(key, digestmod=digest) if key else None
        self.session = uuid.uuid4().hex
        self.count = 0
        addr = f"{connection.get('transport', 'tcp')}://{connection['ip']}:"
        self.shell = self._bind(zmq.ROUTER, addr, connection["shell_port"])
        self.control = self._bind(zmq.ROUTER, addr, connection["control_port"])
        self.stdin = self._bind(zmq.ROUTER, addr, connection["stdin_port"])
        self.iopub = self._bind(zmq.PUB, addr, connection["iopub_port"])
        self.hb = self._bind(zmq.REP, addr, connection["hb_port"])
        self.running = True

    def _bind(self, kind: int, addr: str, port: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        sock.bind(f"{addr}{port}")
        return sock

    def _sign(self, parts: list[bytes]) -> bytes:
        if self.signer is None:
            return b""
        h = self.signer.copy()
        for part in parts:
            h.update(part)
        return h.hexdigest().encode()

    def send(self, sock: zmq.Socket, msg_type: str, content: dict[str, Any], parent: bytes, idents: list[bytes]) -> None:
        header = orjson.dumps({
            "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "bench",
            "session": self.session, "date": datetime.now(timezone.utc).isoformat(),
            "version": PROTOCOL_VERSION,
        })
        parts = [header, parent, b"{}", orjson.dumps(content)]
        sock.send_multipart([*idents, DELIM, self._sign(parts), *parts], copy=False)

    def status(self, state: str, parent: bytes) -> None:
        self.send(self.iopub, "status", {"execution_state": state}, parent, [b"kernel." + self.session.encode() + b".status"])

    def unpack(self, frames: list[bytes]) -> tuple[list[bytes], list[bytes]] | None:
        """(routing identities, message parts) of a request; None, reported, if its signature is bad."""
        split = frames.index(DELIM)
        idents, signature, parts = frames[:split], frames[split + 1], frames[split + 2:]
        if self.signer is not None and not hmac.compare_digest(signature, self._sign(parts[:4])):
            print("echo kernel: bad signature, message dropped", file=sys.stderr)
            return None
        return idents, parts

    def handle(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        unpacked = self.unpack(frames)
        if unpacked is not None:
            self.answer(sock, *unpacked)

    def answer(self, sock: zmq.Socket, idents: list[bytes], parts: list[bytes]) -> None:
        """Publish busy (and for an execute, its input and result), reply, publish idle."""
        header_raw = parts[0]
        header = orjson.loads(header_raw)
        msg_type = header.get("msg_type", "")
        reply_type = msg_type.removesuffix("_request") + "_reply"
        self.status("busy", header_raw)
        if msg_type == "execute_request":
            self.count += 1
            code = orjson.loads(parts[3]).get("code", "")
            self.send(self.iopub, "execute_input", {"code": code, "execution_count": self.count}, header_raw, [b"kernel.execute_input"])
            self.send(self.iopub, "execute_result", {
                "execution_count": self.count, "data": {"text/plain": code}, "metadata": {},
            }, header_raw, [b"kernel.execute_result"])
            content: dict[str, Any] = {"status": "ok", "execution_count": self.count, "user_expressions": {}, "payload": []}
        elif msg_type == "kernel_info_request":
            content = {
                "status": "ok", "protocol_version": PROTOCOL_VERSION, "implementation": "bench-echo",
                "implementation_version": "1.0", "banner": "benchmark echo kernel",
                "language_info": {"name": "text", "version": "1", "mimetype": "text/plain", "file_extension": ".txt"},
            }
        elif msg_type == "shutdown_request":
            content = {"status": "ok", "restart": bool(orjson.loads(parts[3]).get("restart"))}
            self.running = False
        elif msg_type == "comm_info_request":
            content = {"status": "ok", "comms": {}}
        else:
            # Anything else is acknowledged so clients never wait forever.
            content = {"status": "ok"}
        self.send(sock, reply_type, content, header_raw, idents)
        self.status("idle", header_raw)

    def serve(self) -> None:
        poller = zmq.Poller()
        for sock in (self.shell, self.control, self.stdin, self.hb):
            poller.register(sock, zmq.POLLIN)
        while self.running:
            for sock, _ in poller.poll(1000):
                frames = sock.recv_multipart()
                if sock is self.hb:
                    sock.send_multipart(frames)
                elif sock is not self.stdin:
                    self.handle(sock, frames)
        self.ctx.destroy(linger=0)


def install_kernelspec(jupyter_path: Path) -> Path:
    """Write the ``bench-echo`` kernelspec under ``jupyter_path/kernels``."""
    spec_dir = jupyter_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, str(Path(__file__).resolve()), "-f", "{connection_file}"],
        "display_name": "Benchmark echo", "language": "text",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


def main(argv: list[str] | None = None, kernel_class: type[EchoKernel] = EchoKernel) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--connection-file", required=True)
    args = parser.parse_args(argv)
    connection = json.loads(Path(args.connection_file).read_text())
    kernel = kernel_class(connection)
    # SIGINT is an interrupt request in Jupyter, not a reason to exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    kernel.serve()


if __name__ == "__main__":
    main()
