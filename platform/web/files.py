"""Handlers for files (being written)."""

handlers: list = []
