"""`sierradb`: start a node (flags > SIERRA_* environment > TOML file > defaults).

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 for invalid configuration or a data dir
that cannot be opened (one clear line on stderr), non-zero if the node stops on a broken
invariant.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import trio

from sierradb.p2p import load_or_create_seed, peer_id_from_seed
from sierradb.storage import StorageError

from .config import Config, ConfigError, load_config
from .database import Database
from .server import Server

log = logging.getLogger("sierradb.node")

SHUTDOWN_GRACE_S = 5.0
SWITCH_INTERVAL_S = float(os.environ.get("SIERRA_SWITCH_INTERVAL_S", "0.0005"))


async def serve(config: Config, db: Database, peer_id: str) -> None:
    async with trio.open_nursery() as root:
        await root.start(db.run)
        server = Server(config, db, peer_id)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await root.start(server.serve)
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
        await server.shutdown(SHUTDOWN_GRACE_S)
        root.cancel_scope.cancel()  # the database flushes what is queued as it stops


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as e:
        print(f"sierradb: error: {e}", file=sys.stderr)
        return 1
    if config.node_count > 1:
        # The flags exist so configurations carry over, but a cluster needs the p2p and
        # replication layers, which this version does not have yet: refuse rather than run a
        # lone node that the operator believes is replicated.
        print(
            f"sierradb: error: --node-count {config.node_count}: clustering is not available "
            "in this version; run a single node (--node-count 1)",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        os.makedirs(config.dir, exist_ok=True)
        peer_id = peer_id_from_seed(load_or_create_seed(str(config.dir)))
        db = Database.open(config)
    except (StorageError, OSError, ValueError) as e:
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
    # The writer threads need the GIL back right after each fdatasync; with the default 5 ms
    # switch interval a busy event loop keeps them (and every reply) waiting that long.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        trio.run(serve, config, db, peer_id)
    finally:
        db.close()
    log.info("sierradb stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
