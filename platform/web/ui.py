"""Handlers for ui (being written)."""

handlers: list = []
