"""Handlers for contents (being written)."""

handlers: list = []
