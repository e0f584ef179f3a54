"""Boundary Lab's pipeline: one module per DVC stage plus the few shared modules they import."""
