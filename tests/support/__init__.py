"""Test helpers: real servers on loopback, free ports, process cleanup."""
