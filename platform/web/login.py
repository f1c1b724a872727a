"""Handlers for login (being written)."""

handlers: list = []
