"""What one message costs on a py-libp2p stream (TCP + Noise + Yamux, as the nodes use it).

    .venv/bin/python bench/p2p_message_cost.py [--messages 3000] [--size 600]
        [--transport data-link]

Two hosts (`sierradb.p2p.host.Host`) in two processes on loopback: one sends a message of SIZE
bytes and waits for a 2-byte answer, MESSAGES times. Prints each process's CPU time (user +
system) per message and the wall time per round trip. Every frame a node sends to a peer
(replication batches, acknowledgements, forwarded requests and their replies, commit notices)
pays about this once on each side, which is why the replicated path batches frames per write.

`--transport data-link` runs the same exchange over the nodes' data links
(`sierradb.p2p.data_links`: a trio TCP stream, each message one length-prefixed ChaCha20-Poly1305
frame), which carry replication and forwarded requests since py-libp2p cost ~5x as much.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from typing import Protocol

import trio

from sierradb.p2p.addresses import parse_listen_address, parse_peer_address
from sierradb.p2p.data_links import DataLinks, DataStream
from sierradb.p2p.host import Host, Stream

PROTOCOL = "/sierradb-bench/message-cost/1.0.0"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MessageStream(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def receive(self) -> bytes: ...


async def answer(stream: MessageStream, messages: int, out: mp.Queue) -> None:
    """Answer every newline-terminated message with a 2-byte one, then report the CPU."""
    got, started = 0, cpu_s()
    while got < messages:
        n = (await stream.receive()).count(b"\n")
        got += n
        await stream.send(b"k\n" * n)
    out.put(("answerer CPU per message (us)", (cpu_s() - started) / messages * 1e6))


async def ask(stream: MessageStream, messages: int, size: int, out: mp.Queue) -> None:
    """Send `messages` messages of `size` bytes, each after the last one's answer."""
    message = b"x" * (size - 1) + b"\n"
    started, wall = cpu_s(), time.perf_counter()
    for _ in range(messages):
        await stream.send(message)
        await stream.receive()
    out.put(("sender CPU per message (us)", (cpu_s() - started) / messages * 1e6))
    out.put(("wall per round trip (us)", (time.perf_counter() - wall) / messages * 1e6))


def answerer(messages: int, out: mp.Queue) -> None:
    async def main() -> None:
        host = Host(os.urandom(32), parse_listen_address("127.0.0.1:0"))
        async with host.run():
            done = trio.Event()

            async def on_stream(stream: Stream) -> None:
                await answer(stream, messages, out)
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
            await ask(await host.open_stream(peer, PROTOCOL), messages, size, out)

    trio.run(main)


SENDER, ANSWERER = "bench-sender", "bench-answerer"


def data_link_answerer(messages: int, key: bytes, out: mp.Queue) -> None:
    async def main() -> None:
        links = DataLinks(ANSWERER, "127.0.0.1")
        await links.bind()
        links.admit(SENDER, key, ("127.0.0.1",), 1)
        done = trio.Event()

        async def on_stream(stream: DataStream) -> None:
            await answer(stream, messages, out)
            done.set()

        links.set_handler(on_stream, PROTOCOL)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(links.run)
            out.put(("", links.port))
            await done.wait()
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()

    trio.run(main)


def data_link_sender(port: int, messages: int, size: int, key: bytes, out: mp.Queue) -> None:
    async def main() -> None:
        links = DataLinks(SENDER, "127.0.0.1")
        links.admit(ANSWERER, key, ("127.0.0.1",), port)
        stream = await links.open_stream(ANSWERER, PROTOCOL)
        await ask(stream, messages, size, out)
        await stream.close()

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--transport", choices=("libp2p", "data-link"), default="libp2p")
    args = parser.parse_args()
    out: mp.Queue = mp.Queue()
    key = os.urandom(32)
    if args.transport == "data-link":
        answering = mp.Process(target=data_link_answerer, args=(args.messages, key, out))
    else:
        answering = mp.Process(target=answerer, args=(args.messages, out))
    answering.start()
    peer, port = out.get(timeout=60)
    if args.transport == "data-link":
        args_ = (port, args.messages, args.size, key, out)
        sending = mp.Process(target=data_link_sender, args=args_)
    else:
        sending = mp.Process(target=sender, args=(peer, port, args.messages, args.size, out))
    sending.start()
    sending.join()
    answering.join()
    print(f"# {args.transport}: {args.messages} messages of {args.size} bytes, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    while not out.empty():
        name, value = out.get()
        print(f"{name}: {value:,.0f}")


if __name__ == "__main__":
    main()
