"""Load harness comparing Zasper Hub's single-user server with stock Jupyter Server.

Run ``python -m benchmarks.run --help``.  Everything here talks to a server
over its public REST and WebSocket API only, so the same client measures both
servers in the same way.
"""
