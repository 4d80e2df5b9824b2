"""What one message costs on a py-libp2p stream (TCP + Noise + Yamux, as the nodes use it).

    .venv/bin/python bench/p2p_message_cost.py [--messages 3000] [--size 600] [--transport aead]

Two hosts (`sierradb.p2p.host.Host`) in two processes on loopback: one sends a message of SIZE
bytes and waits for a 2-byte answer, MESSAGES times. Prints each process's CPU time (user +
system) per message and the wall time per round trip. Every frame a node sends to a peer
(replication batches, acknowledgements, forwarded requests and their replies, commit notices)
pays about this once on each side, which is why the replicated path batches frames per write.

`--transport aead` runs the same exchange without py-libp2p, as the floor a leaner data channel
could reach: a trio TCP stream, each message one length-prefixed ChaCha20-Poly1305 frame (the
cipher Noise uses here) under a key both processes share.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import struct
import time
from typing import Protocol

import trio
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sierradb.p2p.addresses import parse_listen_address, parse_peer_address
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


class AeadStream:
    """Length-prefixed ChaCha20-Poly1305 frames on a trio stream, a counter as the nonce."""

    def __init__(self, stream: trio.SocketStream, key: bytes) -> None:
        self.stream = stream
        self.aead = ChaCha20Poly1305(key)
        self.sent = 0
        self.received = 0
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        sealed = self.aead.encrypt(self.sent.to_bytes(12, "little"), data, None)
        self.sent += 1
        await self.stream.send_all(struct.pack(">I", len(sealed)) + sealed)

    async def receive(self) -> bytes:
        while True:
            if len(self.buffer) >= 4:
                (size,) = struct.unpack_from(">I", self.buffer)
                if len(self.buffer) >= 4 + size:
                    sealed = bytes(self.buffer[4 : 4 + size])
                    del self.buffer[: 4 + size]
                    nonce = self.received.to_bytes(12, "little")
                    self.received += 1
                    return self.aead.decrypt(nonce, sealed, None)
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk


def aead_answerer(messages: int, key: bytes, out: mp.Queue) -> None:
    async def main() -> None:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        out.put(("", listener.socket.getsockname()[1]))
        async with listener:
            await answer(AeadStream(await listener.accept(), key), messages, out)

    trio.run(main)


def aead_sender(port: int, messages: int, size: int, key: bytes, out: mp.Queue) -> None:
    async def main() -> None:
        stream = AeadStream(await trio.open_tcp_stream("127.0.0.1", port), key)
        await ask(stream, messages, size, out)

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--transport", choices=("libp2p", "aead"), default="libp2p")
    args = parser.parse_args()
    out: mp.Queue = mp.Queue()
    key = os.urandom(32)
    if args.transport == "aead":
        answering = mp.Process(target=aead_answerer, args=(args.messages, key, out))
    else:
        answering = mp.Process(target=answerer, args=(args.messages, out))
    answering.start()
    peer, port = out.get(timeout=60)
    if args.transport == "aead":
        sending = mp.Process(target=aead_sender, args=(port, args.messages, args.size, key, out))
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
