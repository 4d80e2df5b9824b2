"""Identifiers are bit-exact with the reference (protocol reference §2)."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sierradb.node.identifiers import (
    PARTITION_KEY_CACHE_ENTRIES,
    PARTITION_KEY_NAMESPACE,
    event_id_time_ms,
    format_uuid,
    new_event_id,
    new_transaction_id,
    parse_uuid,
    partition_hash,
    partition_id,
    partition_key_for_stream,
)

SAMPLE = uuid.UUID("67e55044-10b1-426f-9247-bb680e5fe0c8")


def test_namespace_is_uuid5_of_the_sierradb_domain() -> None:
    expected = uuid.uuid5(uuid.NAMESPACE_DNS, "sierradb.tqwewe.com")
    assert PARTITION_KEY_NAMESPACE == expected.bytes
    assert format_uuid(PARTITION_KEY_NAMESPACE) == "219bd637-e279-53e9-9e2b-eabe5d9120cc"


@pytest.mark.parametrize(
    ("stream_id", "key"),
    [
        (b"user-123", "7e124fe8-fe28-5398-bb95-53973100148f"),
        (b"orders", "4a5bf0d6-7d0e-50b2-b05f-ea5a8c8b597f"),
        (b"my-stream", "fa3e31cd-2f38-5aee-bb91-8bc6fbf950a3"),
    ],
)
def test_partition_key_matches_reference_examples(stream_id: bytes, key: str) -> None:
    assert format_uuid(partition_key_for_stream(stream_id)) == key


@pytest.mark.parametrize(
    ("stream_id", "phash", "partition"),
    [
        (b"user-123", 61013, 21),
        (b"orders", 49535, 31),
        (b"my-stream", 60998, 6),
        (b"a", 7260, 28),
        (b"stream-1", 2220, 12),
        (b"stream-2", 25978, 26),
    ],
)
def test_partition_hash_and_id_match_reference_examples(
    stream_id: bytes, phash: int, partition: int
) -> None:
    key = partition_key_for_stream(stream_id)
    assert partition_hash(key) == phash
    assert partition_id(key, 32) == partition


@given(st.text(min_size=1, max_size=64))
def test_partition_key_is_uuid5_over_utf8_bytes(stream_id: str) -> None:
    namespace = uuid.UUID(bytes=PARTITION_KEY_NAMESPACE)
    assert partition_key_for_stream(stream_id.encode()) == uuid.uuid5(namespace, stream_id).bytes


@given(st.binary(min_size=16, max_size=16))
def test_partition_hash_is_bits_61_to_46(raw: bytes) -> None:
    assert partition_hash(raw) == (uuid.UUID(bytes=raw).int >> 46) & 0xFFFF


def test_partition_key_cache_is_bounded() -> None:
    assert partition_key_for_stream.cache_info().maxsize == PARTITION_KEY_CACHE_ENTRIES


def test_event_id_layout_matches_reference() -> None:
    eid = new_event_id(0xBEEF, now_ms=0x0123456789AB)
    value = int.from_bytes(eid, "big")
    assert value >> 80 == 0x0123456789AB
    assert (value >> 64) & 0xF == 0x7  # low nibble of byte 7 (the reference's quirk)
    assert (value >> 62) & 0b11 == 0b10
    assert (value >> 46) & 0xFFFF == 0xBEEF
    assert format_uuid(eid).startswith("01234567-89ab-")
    assert format_uuid(eid)[17] == "7"  # the third group ends with 7


@given(st.integers(0, 0xFFFF), st.integers(0, (1 << 48) - 1))
def test_event_id_embeds_partition_hash_and_time(phash: int, now_ms: int) -> None:
    eid = new_event_id(phash, now_ms)
    assert partition_hash(eid) == phash
    assert event_id_time_ms(eid) == now_ms


def test_event_id_time_is_masked_to_48_bits_like_the_reference() -> None:
    assert event_id_time_ms(new_event_id(1, now_ms=(1 << 48) + 5)) == 5


def test_event_id_uses_the_clock_by_default() -> None:
    before = time.time_ns() // 1_000_000
    eid = new_event_id(7)
    after = time.time_ns() // 1_000_000
    assert before <= event_id_time_ms(eid) <= after


def test_event_ids_carry_58_random_bits() -> None:
    ids = {new_event_id(7, now_ms=1) for _ in range(1000)}
    assert len(ids) == 1000
    random_bits = {(int.from_bytes(e, "big") >> 68) & 0xFFF for e in ids}
    assert len(random_bits) > 500


def test_single_event_transaction_id_has_top_bit_of_byte_8_set() -> None:
    for _ in range(100):
        tid = new_transaction_id(single=True)
        assert tid[8] & 0x80
        assert uuid.UUID(bytes=tid).version == 4
        assert uuid.UUID(bytes=tid).variant == uuid.RFC_4122


def test_multi_event_transaction_id_has_top_bit_of_byte_8_clear() -> None:
    for _ in range(100):
        tid = new_transaction_id(single=False)
        assert not tid[8] & 0x80
        assert tid[6] >> 4 == 4
        assert format_uuid(tid)[19] in "01234567"


@pytest.mark.parametrize(
    "text",
    [
        b"67e55044-10b1-426f-9247-bb680e5fe0c8",
        b"67E55044-10B1-426F-9247-BB680E5FE0C8",
        b"67e5504410b1426f9247bb680e5fe0c8",
        b"{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        b"urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
        b"  67e55044-10b1-426f-9247-bb680e5fe0c8\t\r\n",
        b" 67e5504410b1426f9247bb680e5fe0c8    ",
        "\u00a067e55044-10b1-426f-9247-bb680e5fe0c8\u3000".encode(),
    ],
)
def test_parse_uuid_accepts_rust_parse_str_forms(text: bytes) -> None:
    assert parse_uuid(text) == SAMPLE.bytes


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"67e55044",
        b"{67e5504410b1426f9247bb680e5fe0c8}",  # braces only around the hyphenated form
        b"URN:UUID:67e55044-10b1-426f-9247-bb680e5fe0c8",  # the prefix is case-sensitive
        b"67e550-4410b1-426f-9247-bb680e5fe0c8",  # hyphens in the wrong places
        b"67e55044-10b1-426f-9247-bb680e5fe0c8-",
        b"67e55044-10b1-426f-9247-bb680e5fe0cg",
        b"67e55044-10b1-426f-9247-bb680e5fe0c+",
        b"67e5504410b1426f9247bb680e5fe0 8",  # bytes.fromhex would skip the space
        b"67e55044-10b1-426f-9247-bb680e5f e0c",
        b"\x1c67e55044-10b1-426f-9247-bb680e5fe0c8",  # not whitespace for Rust
        b"\xff67e55044-10b1-426f-9247-bb680e5fe0c8",  # not UTF-8
    ],
)
def test_parse_uuid_rejects_other_forms(text: bytes) -> None:
    with pytest.raises(ValueError):
        parse_uuid(text)


@given(st.binary(min_size=16, max_size=16))
def test_format_uuid_is_lowercase_hyphenated_and_round_trips(raw: bytes) -> None:
    text = format_uuid(raw)
    assert text == str(uuid.UUID(bytes=raw))
    assert parse_uuid(text.encode()) == raw


@given(st.binary(max_size=50))
def test_parse_uuid_raises_only_value_error(text: bytes) -> None:
    try:
        assert len(parse_uuid(text)) == 16
    except ValueError:
        pass
