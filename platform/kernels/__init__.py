"""Kernels: lifecycle through jupyter_client, and the byte-level ZMQ ⇄ WebSocket bridge.

Layers, imported one way:

- `signing`   HMAC over raw message parts.
- `codec`, `codec_json`, `codec_v1`   the two kernel WebSocket wire formats.
- `replay`    the bounded per-kernel buffer for messages nobody received.
- `zmqio`     one kernel's ZMQ sockets, read without per-message futures.
- `kernel`    one running kernel: its manager, sockets, clients, death monitor.
- `pool`      the opt-in pool of pre-started kernels handed to new sessions.
- `registry`  all kernels of the server, configuration and idle culling.
"""
