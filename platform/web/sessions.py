"""Handlers for sessions (being written)."""

handlers: list = []
