"""The web UI's built assets (dist/) ship inside this package; its TypeScript
sources and build script live alongside (see package.json)."""
