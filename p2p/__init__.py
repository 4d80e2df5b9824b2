"""sierradb.p2p: the node's identity, cluster state, and (in ``runtime``) libp2p discovery,
handshake, heartbeats and topology gossip.

Nothing imported here loads libp2p, so a single node starts fast; ``sierradb.p2p.runtime`` and
``sierradb.p2p.host`` do, and only a cluster node imports them.
"""

from .cluster_state import ClusterState
from .errors import AddressError, ClusterStateError, FrameError, P2PError
from .identity import load_or_create_seed, peer_id_from_seed

__all__ = [
    "AddressError",
    "ClusterState",
    "ClusterStateError",
    "FrameError",
    "P2PError",
    "load_or_create_seed",
    "peer_id_from_seed",
]
