"""Vigil: open, self-learning network detection and response."""

__version__ = "0.1.0"
