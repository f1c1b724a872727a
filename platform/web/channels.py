"""Handlers for channels (being written)."""

handlers: list = []
