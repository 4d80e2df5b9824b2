"""sierradb.p2p: the node's identity and (with the cluster work) libp2p discovery and RPC.

Nothing here imports libp2p at import time, so a single node starts fast.
"""

from .identity import load_or_create_seed, peer_id_from_seed

__all__ = ["load_or_create_seed", "peer_id_from_seed"]
