"""Apsis: a compact job scheduler with a durable event stream."""

__version__ = "0.1.0"
