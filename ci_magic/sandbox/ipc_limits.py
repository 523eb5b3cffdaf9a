"""What an Arrow IPC file from the sandbox declares, read from its metadata before anything is built.

pyarrow decompresses a record batch as it reads it: a 13 KB file of zstd-compressed zeros becomes 400 MB in the
user's kernel while merely counting its rows. So the parent reads the file's footer and each batch's message
header itself — FlatBuffers tables, read with the ``flatbuffers`` runtime, every offset bounds-checked — and
learns the declared rows and whether any batch is compressed without touching a body. ci_magic's own writer
(``transfer.py``) never compresses, so a compressed file is refused outright; the declared rows feed the
size checks in ``receive.py`` before pyarrow reads anything.

Layout (format/File.fbs, Message.fbs): the file ends with the footer, its int32 length and ``ARROW1``; the footer
lists blocks (offset, metadata length, body length) of dictionary and record batches; at each offset a message:
``0xFFFFFFFF``, an int32 length, then the ``Message`` table whose header is a ``RecordBatch`` (``length``, …,
``compression``) or a ``DictionaryBatch`` holding one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from flatbuffers import number_types as N
from flatbuffers.table import Table

MAGIC = b"ARROW1"
_BLOCK = struct.Struct("<qi4xq")  # offset, metaDataLength, (padding), bodyLength
_RECORD_BATCH, _DICTIONARY_BATCH = 3, 2  # MessageHeader union types
MAX_BLOCKS = 1_000_000


class MalformedIpc(ValueError):
    """The file's metadata does not hold together (offsets outside it, wrong types, too many blocks)."""


@dataclass(frozen=True)
class Declared:
    rows: int  # the record batches' lengths together
    compressed: bool  # any batch (record or dictionary) with a body compression
    batches: int


def declared(data: bytes | memoryview) -> Declared:
    """What the file's metadata declares (MalformedIpc when it cannot be read safely)."""
    buf = bytes(data) if isinstance(data, memoryview) else data
    try:
        return _declared(buf)
    except (struct.error, IndexError, TypeError, OverflowError) as exc:
        raise MalformedIpc(f"unreadable metadata ({type(exc).__name__})") from None


def _declared(buf: bytes) -> Declared:
    if len(buf) < 2 * len(MAGIC) + 4 or buf[: len(MAGIC)] != MAGIC or buf[-len(MAGIC) :] != MAGIC:
        raise MalformedIpc("not an Arrow IPC file")
    (size,) = struct.unpack_from("<i", buf, len(buf) - len(MAGIC) - 4)
    start = len(buf) - len(MAGIC) - 4 - size
    if size <= 0 or start < len(MAGIC):
        raise MalformedIpc("the footer is outside the file")
    footer = _root(buf[start : start + size])
    rows, compressed, count = 0, False, 0
    for slot, kind in ((2, _DICTIONARY_BATCH), (3, _RECORD_BATCH)):  # Footer.dictionaries, .recordBatches
        for offset in _blocks(footer, slot):
            count += 1
            if count > MAX_BLOCKS:
                raise MalformedIpc("too many batches")
            batch = _batch(buf, offset, kind)
            compressed = compressed or _field(batch, 3) != 0  # RecordBatch.compression
            if kind == _RECORD_BATCH:
                rows += _int64(batch, 0)  # RecordBatch.length
    return Declared(rows, compressed, count)


def _root(buf: bytes) -> Table:
    (root,) = struct.unpack_from("<I", buf, 0)
    if root >= len(buf):
        raise MalformedIpc("a table is outside its buffer")
    return Table(bytearray(buf), root)


def _field(table: Table, slot: int) -> int:
    """The offset of field ``slot`` inside its table (0 when absent)."""
    return int(table.Offset(4 + 2 * slot))


def _int64(table: Table, slot: int) -> int:
    o = _field(table, slot)
    value = int(table.Get(N.Int64Flags, table.Pos + o)) if o else 0
    if value < 0:
        raise MalformedIpc("a negative length")
    return value


def _blocks(footer: Table, slot: int) -> list[int]:
    o = _field(footer, slot)
    if not o:
        return []
    n, first = footer.VectorLen(o), footer.Vector(o)
    if n > MAX_BLOCKS or first + n * _BLOCK.size > len(footer.Bytes):
        raise MalformedIpc("the footer lists blocks outside it")
    return [_BLOCK.unpack_from(footer.Bytes, first + i * _BLOCK.size)[0] for i in range(n)]


def _batch(buf: bytes, offset: int, kind: int) -> Table:
    """The RecordBatch table of the message at ``offset`` (a dictionary batch's own one)."""
    if offset < len(MAGIC) or offset + 8 > len(buf):
        raise MalformedIpc("a block is outside the file")
    (marker,) = struct.unpack_from("<I", buf, offset)
    head = offset + 8 if marker == 0xFFFFFFFF else offset + 4  # continuation marker, or the pre-1.0 form
    (length,) = struct.unpack_from("<i", buf, head - 4)
    if length <= 0 or head + length > len(buf):
        raise MalformedIpc("a message is outside the file")
    message = _root(buf[head : head + length])
    o = _field(message, 1)  # Message.header_type
    header_type = int(message.Get(N.Uint8Flags, message.Pos + o)) if o else 0
    if header_type != kind or not _field(message, 2):
        raise MalformedIpc("a block does not hold the batch the footer says")
    table = Table(message.Bytes, message.Indirect(message.Pos + _field(message, 2)))
    if kind == _DICTIONARY_BATCH:  # DictionaryBatch.data
        o = _field(table, 1)
        if not o:
            raise MalformedIpc("a dictionary batch without data")
        table = Table(table.Bytes, table.Indirect(table.Pos + o))
    return table
