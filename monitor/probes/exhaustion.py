"""Moved to :mod:`monitor.net.exhaustion`; kept so callers not yet moved still import."""

from monitor.net.exhaustion import OWN_ERRNOS, Lookup, executor_full, own_exhaustion

__all__ = ["OWN_ERRNOS", "Lookup", "executor_full", "own_exhaustion"]
