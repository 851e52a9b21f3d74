"""The append-only journal: one record per batch, fsync'd before answers leave.

A record is `length (u32) | crc32 (u32) | msgpack payload`. Replay stops at
the first record that is short or fails its checksum - the tail a crash cut
off, whose answers were never sent - and truncates it away.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

import msgspec

_FRAME = struct.Struct(">II")
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


class Journal:
    def __init__(self, path: Path, fsync: bool = True):
        self.path = path
        self.fsync = fsync
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, *records: dict) -> int:
        """Write and make durable records, with one fsync (group commit);
        returns the bytes written."""
        parts = []
        for record in records:
            payload = _enc.encode(record)
            parts.append(_FRAME.pack(len(payload), zlib.crc32(payload)))
            parts.append(payload)
        data = b"".join(parts)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        if self.fsync:
            os.fdatasync(self.fd)
        return len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def replay(path: Path, truncate: bool = True) -> Iterator[dict]:
    """Yield the intact records of a journal file, truncating a torn tail
    (unless `truncate` is False: a reader beside a running server)."""
    data = path.read_bytes()
    pos = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        start, end = pos + _FRAME.size, pos + _FRAME.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        yield _dec.decode(data[start:end])
        pos = end
    if truncate and pos != len(data):
        with open(path, "r+b") as f:
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())
