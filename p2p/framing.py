"""Length-prefixed cbor2 frames for peer streams, sans-I/O.

Theory of operation. A frame is a 4-byte big-endian length followed by that many bytes of one
cbor2-encoded map. ``FrameReader`` is fed whatever a stream read returned (one read can hold many
frames, or part of one) and yields the decoded maps in order. The declared length is checked
against the reader's limit before any byte of the body is buffered, so a peer cannot make us hold
more than one frame's worth; anything that does not decode to a map is a ``FrameError`` and the
link that carried it is closed. We use our own framing rather than libp2p's msgio, which gives up
on large messages and reads length prefixes byte by byte.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

from .errors import FrameError

HEADER = struct.Struct(">I")
# Control frames (handshake, heartbeats, gossip) are small; a member table of the largest
# cluster we accept is a few tens of KiB.
MAX_CONTROL_FRAME_BYTES = 1024 * 1024


def encode_frame(message: dict[str, Any]) -> bytes:
    return frame(cbor2.dumps(message))


def frame(body: bytes) -> bytes:
    """A length-prefixed frame around opaque bytes."""
    return HEADER.pack(len(body)) + body


class FrameReader:
    def __init__(self, max_frame_bytes: int = MAX_CONTROL_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._check_declared_length()

    def next_body(self) -> bytes | None:
        """The next complete frame's bytes, or None until more bytes arrive."""
        buf = self._buffer
        if len(buf) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(buf)
        end = HEADER.size + length
        if len(buf) < end:
            return None
        body = bytes(buf[HEADER.size : end])
        del buf[:end]
        self._check_declared_length()  # the next frame's header may already be here
        return body

    def next(self) -> dict[str, Any] | None:
        """The next complete frame's map (cbor), or None until more bytes arrive."""
        body = self.next_body()
        if body is None:
            return None
        try:
            message = cbor2.loads(body)
        except Exception as e:  # noqa: BLE001 - any decoder failure is the peer's bad frame
            raise FrameError(f"undecodable frame: {type(e).__name__}: {e}") from e
        if not isinstance(message, dict):
            raise FrameError(f"a frame must be a map, got {type(message).__name__}")
        return message

    def _check_declared_length(self) -> None:
        if len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > self.max_frame_bytes:
                raise FrameError(
                    f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}"
                )

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)
