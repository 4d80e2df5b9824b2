"""What one message costs on a py-libp2p stream (TCP + Noise + Yamux, as the nodes use it).

    .venv/bin/python bench/p2p_message_cost.py [--messages 3000] [--size 600]

Two hosts (`sierradb.p2p.host.Host`) in two processes on loopback: one sends a message of SIZE
bytes and waits for a 2-byte answer, MESSAGES times. Prints each process's CPU time (user +
system) per message and the wall time per round trip. Every frame a node sends to a peer
(replication batches, acknowledgements, forwarded requests and their replies, commit notices)
pays about this once on each side, which is why the replicated path batches frames per write.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time

import trio

from sierradb.p2p.addresses import parse_listen_address, parse_peer_address
from sierradb.p2p.host import Host, Stream

PROTOCOL = "/sierradb-bench/message-cost/1.0.0"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def answerer(messages: int, out: mp.Queue) -> None:
    async def main() -> None:
        host = Host(os.urandom(32), parse_listen_address("127.0.0.1:0"))
        async with host.run():
            done = trio.Event()

            async def on_stream(stream: Stream) -> None:
                got, started = 0, cpu_s()
                while got < messages:
                    data = await stream.receive()
                    n = data.count(b"\n")
                    got += n
                    await stream.send(b"k\n" * n)
                out.put(("answerer CPU per message (us)", (cpu_s() - started) / messages * 1e6))
                done.set()

            host.set_handler(on_stream, PROTOCOL)
            out.put((host.peer_id, host.listen_port()))
            await done.wait()
            await trio.sleep(0.2)

    trio.run(main)


def sender(peer: str, port: int, messages: int, size: int, out: mp.Queue) -> None:
    async def main() -> None:
        host = Host(os.urandom(32), parse_listen_address("127.0.0.1:0"))
        async with host.run():
            await host.dial(parse_peer_address(f"/ip4/127.0.0.1/tcp/{port}"), peer)
            stream = await host.open_stream(peer, PROTOCOL)
            message = b"x" * (size - 1) + b"\n"
            started, wall = cpu_s(), time.perf_counter()
            for _ in range(messages):
                await stream.send(message)
                await stream.receive()
            out.put(("sender CPU per message (us)", (cpu_s() - started) / messages * 1e6))
            out.put(("wall per round trip (us)", (time.perf_counter() - wall) / messages * 1e6))

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=600)
    args = parser.parse_args()
    out: mp.Queue = mp.Queue()
    answering = mp.Process(target=answerer, args=(args.messages, out))
    answering.start()
    peer, port = out.get(timeout=60)
    sending = mp.Process(target=sender, args=(peer, port, args.messages, args.size, out))
    sending.start()
    sending.join()
    answering.join()
    print(f"# {args.messages} messages of {args.size} bytes, load {os.getloadavg()[0]:.2f}")
    while not out.empty():
        name, value = out.get()
        print(f"{name}: {value:,.0f}")


if __name__ == "__main__":
    main()
