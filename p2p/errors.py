"""The p2p package's exceptions: one small tree, so callers catch what they can handle."""

from __future__ import annotations


class P2PError(Exception):
    """Base of every expected p2p failure."""


class FrameError(P2PError):
    """A peer sent bytes that are not a valid frame or message: the link is closed."""


class ClusterStateError(P2PError):
    """The data dir's cluster state cannot be used with this configuration (refuse to start)."""


class AddressError(P2PError, ValueError):
    """A listen or peer address that cannot be used."""
