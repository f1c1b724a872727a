"""Handlers for kernels (being written)."""

handlers: list = []
