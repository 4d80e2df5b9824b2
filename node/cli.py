"""`sierradb`: start a node (flags > SIERRA_* environment > TOML file > defaults).

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 for invalid configuration or a data dir
that cannot be opened (one clear line on stderr), non-zero if the node stops on a broken
invariant.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

import trio

from sierradb.p2p import ClusterState, ClusterStateError, load_or_create_seed, peer_id_from_seed
from sierradb.storage import StorageError

from .config import Config, ConfigError, load_config
from .database import Database
from .errors import NodeError
from .placement import PLACEMENT_VERSION
from .replication.service import PromiseWriteFailed, ReplicationService
from .server import Server

if TYPE_CHECKING:
    from sierradb.p2p.runtime import ClusterRuntime

log = logging.getLogger("sierradb.node")

SHUTDOWN_GRACE_S = 5.0
# On SIGTERM a cluster node hands over the partitions it leads for at most this long.
HANDOVER_TIMEOUT_S = 5.0
SWITCH_INTERVAL_S = float(os.environ.get("SIERRA_SWITCH_INTERVAL_S", "0.0005"))


def cluster_runtime(
    config: Config, db: Database, seed: bytes, state: ClusterState, client_address: str
) -> ClusterRuntime:
    """The p2p runtime of a cluster node (importing it is what loads libp2p)."""
    from sierradb.p2p.addresses import parse_listen_address, parse_peer_address
    from sierradb.p2p.runtime import ClusterRuntime, ClusterSettings

    from .version import SERVER_VERSION

    settings = ClusterSettings(
        cluster_name=config.cluster_name,
        secret=None if config.cluster_secret is None else config.cluster_secret.encode(),
        node_count=config.node_count,
        node_index=config.node_index,
        replication_factor=config.replication_factor,
        partitions=db.store.partition_count,
        buckets=db.store.bucket_count,
        placement_version=PLACEMENT_VERSION,
        member_id=db.store.member_id,
        listen=parse_listen_address(config.cluster_address),
        data_port=config.data_port,
        peers=tuple(parse_peer_address(p) for p in config.peers),
        mdns=config.mdns,
        heartbeat_interval_s=config.heartbeat_interval_s,
        down_timeout_s=config.down_timeout_s,
        client_address=client_address,
        software_version=SERVER_VERSION,
    )
    return ClusterRuntime(settings, seed, state)


def freeze_long_lived() -> None:
    """Once serving starts, everything long-lived exists: the store's structures, the roles,
    and on a cluster node libp2p's modules (imported late) and the replicas. Moving it all to
    the collector's permanent generation keeps every full collection from walking it again
    (on a cluster node that was ~50,000 objects, 45 ms per full collection, ~9% of the CPU)."""
    gc.collect()
    gc.freeze()


class StartupError(Exception):
    """The node cannot start serving (one clear line; exit 1)."""


async def serve(
    config: Config,
    db: Database,
    peer_id: str,
    seed: bytes,
    state: ClusterState,
    http_socket: socket.socket | None = None,
) -> None:
    async with trio.open_nursery() as root:
        await root.start(db.run)
        server = Server(config, db, peer_id)
        if http_socket is not None:
            from .http import HttpServer  # starlette and hypercorn load only when needed

            await root.start(HttpServer(config, db, server, http_socket).serve)
        try:
            client_address = await server.bind()
        except OSError as e:
            raise StartupError(f"cannot listen on {config.client_address}: {e.strerror}") from e
        cluster = replication = None
        if config.node_count > 1:
            cluster = cluster_runtime(config, db, seed, state, client_address)
            await root.start(cluster.run)
            replication = ReplicationService(
                db.store, db.read, db.writers, db.board, cluster,
                node_index=config.node_index, node_count=config.node_count,
                replication_factor=config.replication_factor, incarnation=state.incarnation,
                heartbeat_interval_s=config.heartbeat_interval_s,
                election_timeout_s=config.down_timeout_s,
                write_timeout_s=config.write_timeout_s,
            )  # fmt: skip
            db.replicate_with(list(replication.roles), replication.durable)
            await root.start(replication.run)
            server.cluster, server.replication = cluster, replication
            replication.server = server
        freeze_long_lived()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await root.start(server.serve)
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
        if replication is not None:
            # Hand over what this node leads, so a rolling restart fails no write (L7).
            await replication.hand_over_all(HANDOVER_TIMEOUT_S)
        if cluster is not None:
            await cluster.leave()  # then peers stop counting on this node at once
        await server.shutdown(SHUTDOWN_GRACE_S)
        root.cancel_scope.cancel()  # the database flushes what is queued as it stops


def main(argv: list[str] | None = None) -> int:
    if sys.flags.optimize:
        # Broken invariants are assertions that must stop the node (fail-stop); under -O they
        # would silently vanish and the node would carry on with state it can no longer trust.
        print(
            "sierradb: error: refusing to run with python -O: assertions are the node's "
            "fail-stop checks",
            file=sys.stderr,
        )
        return 1
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as e:
        print(f"sierradb: error: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        os.makedirs(config.dir, exist_ok=True)
        seed = load_or_create_seed(str(config.dir))
        peer_id = peer_id_from_seed(seed)
        db = Database.open(config)
    except (StorageError, OSError, ValueError) as e:
        print(f"sierradb: error: {e}", file=sys.stderr)
        return 1
    try:
        state = ClusterState.start(
            str(config.dir),
            node_count=config.node_count,
            node_index=config.node_index,
            replication_factor=config.replication_factor,
        )
        if config.node_count == 1:
            db.lead_all(state.incarnation)
        else:
            db.refuse_appends(NodeError("TRYAGAIN", "the node is starting; retry"))
    except (ClusterStateError, OSError) as e:
        db.close()
        print(f"sierradb: error: {e}", file=sys.stderr)
        return 1
    try:
        http_socket = None
        if config.http_address is not None:
            from .http import bind_http_socket

            http_socket = bind_http_socket(config)
    except OSError as e:
        db.close()
        print(f"sierradb: error: {e}", file=sys.stderr)
        return 1
    store = db.store
    log.info(
        "sierradb starting: data dir %s, %d partitions in %d buckets, segment size %d bytes, "
        "peer id %s, opened in %.3f s",
        config.dir,
        store.partition_count,
        store.bucket_count,
        store.segment_size_bytes,
        peer_id,
        db.opened_in_s,
    )
    # The writer thread needs the GIL back right after each fdatasync; with the default 5 ms
    # switch interval a busy event loop keeps it (and every reply) waiting that long.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    failed = False
    try:
        trio.run(serve, config, db, peer_id, seed, state, http_socket)
    except* StartupError as group:
        print(f"sierradb: error: {group.exceptions[0]}", file=sys.stderr)
        failed = True
    except* PromiseWriteFailed as group:  # fail-stop: the data dir can no longer be trusted
        log.critical("%s", group.exceptions[0])
        failed = True
    finally:
        db.close()
    if failed:
        return 1
    log.info("sierradb stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
