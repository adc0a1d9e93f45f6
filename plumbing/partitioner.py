"""Which partition a key's records are on: the hash behind `clients.KEY_PARTITIONER`.

Every livewindows writer sets librdkafka's `murmur2_random` partitioner, the Java
clients' default: partition = (murmur2(key) & 0x7fffffff) mod partition count
(a record with no key goes to a random partition instead). Readers that look for
one key (`livewindows explain`) compute the same here rather than scan every
partition. Java's murmur2 works on signed 32-bit ints; masking every product and
shift to 32 bits and shifting right unsigned (Java's `>>>`) gives the same bits.
"""

from __future__ import annotations

__all__ = ["key_partition", "murmur2"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (as librdkafka's `rd_murmur2`), as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length - length % 4
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[body:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def key_partition(key: bytes, partitions: int) -> int:
    """The partition `murmur2_random` puts a record with this (non-null) key on."""
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
