"""The node's identity: an Ed25519 key kept in the data dir, and the libp2p peer id it gives.

The key is created once (32 random seed bytes, written atomically with mode 0600) so the peer id
is stable across restarts. The peer id is computed the way libp2p does (an identity multihash of
the protobuf-encoded public key, in base58btc: ``12D3KooW...``) without importing libp2p, which
takes over a second and is not needed by a single node.
"""

from __future__ import annotations

import os

from nacl.signing import SigningKey

from .files import write_file_atomic

KEY_FILE = "node.key"
_B58 = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58btc(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = bytearray()
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return (b"1" * pad + bytes(reversed(out))).decode()


def load_or_create_seed(data_dir: str) -> bytes:
    path = os.path.join(data_dir, KEY_FILE)
    try:
        with open(path, "rb") as f:
            seed = f.read()
        if len(seed) == 32:
            return seed
        raise ValueError(f"{path} is damaged ({len(seed)} bytes, expected 32)")
    except FileNotFoundError:
        pass
    seed = os.urandom(32)
    write_file_atomic(path, seed, mode=0o600)
    return seed


def peer_id_from_seed(seed: bytes) -> str:
    public = bytes(SigningKey(seed).verify_key)
    # protobuf PublicKey {Type: Ed25519 (1), Data: 32 bytes}
    encoded = b"\x08\x01\x12\x20" + public
    # identity multihash: code 0x00, length
    return base58btc(b"\x00" + bytes([len(encoded)]) + encoded)
