"""Handlers for kernelspecs (being written)."""

handlers: list = []
