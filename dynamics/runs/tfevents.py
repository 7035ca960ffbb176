"""A small reader of TensorBoard event files: the record framing, its CRC32C checks, and the few protobuf fields
that hold scalars, in pure Python (no TensorFlow, no tensorboard, no `protobuf`). It is the reference:
dynamics.runs.tfevents_fast reads the same files ~10× faster with compiled protobuf and CRC32C, falls back to this
decoder when those are missing, and is tested equal to it.

An event file is a sequence of records, each `uint64 length | uint32 masked_crc32c(length) | data[length] |
uint32 masked_crc32c(data)` (little-endian; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 mod 2³²). `data`
is a serialised `tensorflow.Event`; we decode its wire format by hand (varint, 64-bit, length-delimited and
32-bit fields) and keep Event.wall_time (1, double), Event.step (2, int64) and Event.summary (5) →
Summary.value (1) → Value.tag (1), Value.simple_value (2, float), Value.tensor (8, a TensorProto whose single
float/double/int element is the scalar of newer writers: dtype 1, tensor_content 4, float_val 5, double_val 6,
int_val 7, int64_val 10). Everything else (graphs, histograms, images, text, non-scalar tensors) is counted
and reported as skipped. `read_scalars(data)` is what dynamics.runs.imports calls; any damage raises TFEventsError,
except a cut last record (the file of a run still writing), which ends the read with a note (Events.truncated).
Steps are int64 (Event.step), so token counts ≥ 2³¹ used as steps are kept.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["TFEventsError", "Scalar", "read_scalars", "looks_like_events", "first_wall_time", "crc32c", "masked_crc32c"]


class TFEventsError(ValueError):
    """The bytes are not a readable event file; the message names the record and the problem."""


# --- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven -----------------------------------
def _table() -> list[int]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _table()


def _update(crc: int, data) -> int:
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def crc32c(data: bytes, chunk: int = 4096) -> int:
    """CRC32C of `data` (crc32c(b"123456789") == 0xE3069283). Long inputs take the chunked numpy path."""
    if len(data) < 16 * chunk:
        return _update(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    return _chunked(data, chunk) ^ 0xFFFFFFFF


def _chunked(data: bytes, m: int) -> int:
    """The CRC register after `data`, from k chunks of m bytes updated side by side (numpy, one table lookup
    per byte position for all chunks at once). The register update is linear over GF(2): reg(s, A‖B) =
    Z(reg(s, A)) ^ reg(0, B), where Z = "m zero bytes" is linear in s; Z's images of the 32 basis states
    ride along as 32 extra rows fed zeros, and byte tables of Z then join the chunks in order."""
    import numpy as np
    k = len(data) // m
    rows = np.frombuffer(data, dtype=np.uint8, count=k * m).reshape(k, m)
    cols_in = np.zeros((m, k + 32), np.uint8)                               # (m, k + 32): byte j of each row
    cols_in[:, :k] = rows.T
    reg = np.zeros(k + 32, dtype=np.uint32)
    reg[0] = 0xFFFFFFFF
    reg[k:] = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    table = np.array(_TABLE, dtype=np.uint32)
    for j in range(m):
        reg = table[(reg ^ cols_in[j]) & 0xFF] ^ (reg >> 8)
    cols = [int(c) for c in reg[k:]]                                        # Z(1 << b)
    ztab = [[0] * 256 for _ in range(4)]                                    # Z(v << 8q) for bytes v
    for q in range(4):
        for v in range(256):
            z = 0
            for b in range(8):
                if v >> b & 1:
                    z ^= cols[8 * q + b]
            ztab[q][v] = z
    acc = int(reg[0])
    for c in reg[1:k].tolist():
        acc = ztab[0][acc & 255] ^ ztab[1][acc >> 8 & 255] ^ ztab[2][acc >> 16 & 255] ^ ztab[3][acc >> 24] ^ c
    return _update(acc, memoryview(data)[k * m:])


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- protobuf wire format --------------------------------------------------------------------------------
class _Corrupt(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("bad varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of each field: varint -> int, 64/32-bit -> 8/4 bytes, length -> bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise _Corrupt("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt in (1, 5):
            size = 8 if wt == 1 else 4
            if pos + size > len(buf):
                raise _Corrupt("truncated fixed field")
            val, pos = buf[pos:pos + size], pos + size
        elif wt == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise _Corrupt("truncated length-delimited field")
            val, pos = buf[pos:pos + size], pos + size
        else:
            raise _Corrupt(f"unsupported wire type {wt}")
        yield num, wt, val


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


_DT = {1: ("<f", 4), 2: ("<d", 8), 3: ("<i", 4), 9: ("<q", 8)}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64


def _tensor_scalar(buf: bytes) -> float | str:
    """A TensorProto holding exactly one number -> that number; otherwise a reason string (skipped)."""
    dtype, content, values = 0, None, []
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 0:
            dtype = val
        elif num == 4 and wt == 2:
            content = val
        elif num in (5, 6) and wt == 2:  # packed float_val / double_val
            fmt = "<f" if num == 5 else "<d"
            size = struct.calcsize(fmt)
            if len(val) % size:
                raise _Corrupt("packed floats of odd length")
            values += [x for (x,) in struct.iter_unpack(fmt, val)]
        elif num in (5, 6) and wt in (5, 1):
            values.append(struct.unpack("<f" if wt == 5 else "<d", val)[0])
        elif num in (7, 10) and wt == 2:  # packed int_val / int64_val
            p = 0
            while p < len(val):
                v, p = _varint(val, p)
                values.append(float(_signed64(v) if num == 10 else struct.unpack("<i", struct.pack(
                    "<I", v & 0xFFFFFFFF))[0]))
        elif num in (7, 10) and wt == 0:
            values.append(float(_signed64(val)))
    if dtype not in _DT:
        return f"tensor of dtype {dtype} (not a number)"
    if content is not None:
        fmt, size = _DT[dtype]
        if len(content) != size:
            return f"tensor with {len(content) // size} elements (not a scalar)"
        return float(struct.unpack(fmt, content)[0])
    if len(values) != 1:
        return f"tensor with {len(values)} elements (not a scalar)"
    return values[0]


# --- records -> scalars ----------------------------------------------------------------------------------
@dataclass
class Scalar:
    tag: str
    step: int
    wall_time: float
    value: float


@dataclass
class Events:
    scalars: list[Scalar] = field(default_factory=list)
    skipped: dict[str, list] = field(default_factory=dict)  # reason -> [count, first few tags]
    records: int = 0
    truncated: str = ""  # why reading stopped early (a cut last record), else empty

    def skip(self, why: str, tag: str = "") -> None:
        entry = self.skipped.setdefault(why, [0, []])
        entry[0] += 1
        if tag and len(entry[1]) < 5 and tag not in entry[1]:
            entry[1].append(tag)


def _records(data: bytes, max_records: int, ev: "Events"):
    """(index, body) of each whole record; a cut last record (a file still being written) ends the file and is
    noted in ev.truncated, as TensorBoard reads it; a CRC mismatch anywhere is damage and raises."""
    pos, k = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            ev.truncated = f"the last record (record {k}) is cut off at byte {len(data)}: read up to the cut"
            return
        header = data[pos:pos + 8]
        (length,), (hcrc,) = struct.unpack("<Q", header), struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc32c(header) != hcrc:
            raise TFEventsError(f"record {k} at byte {pos}: length CRC mismatch (not an event file, or damaged)")
        start = pos + 12
        if start + length + 4 > len(data):
            ev.truncated = (f"the last record (record {k}, {length} bytes) is cut off at byte {len(data)}: "
                            f"read up to the cut")
            return
        body = data[start:start + length]
        (dcrc,) = struct.unpack("<I", data[start + length:start + length + 4])
        if masked_crc32c(body) != dcrc:
            raise TFEventsError(f"record {k} at byte {pos}: data CRC mismatch (damaged file)")
        k += 1
        if k > max_records:
            raise TFEventsError(f"too many records (more than {max_records}); raise the rows limit")
        yield k - 1, body
        pos = start + length + 4


def looks_like_events(data: bytes) -> bool:
    """True when the bytes start with an event-file record header (its length CRC matches): content sniffing,
    so a renamed event file is still recognised."""
    return len(data) >= 12 and masked_crc32c(data[:8]) == struct.unpack("<I", data[8:12])[0]


def first_wall_time(data: bytes) -> float | None:
    """Event.wall_time of the first record (when its writer started), or None if it cannot be read."""
    try:
        for _, body in _records(data, 1, Events()):
            for num, wt, val in _fields(body):
                if num == 1 and wt == 1:
                    return struct.unpack("<d", val)[0]
            return None
    except (TFEventsError, _Corrupt, struct.error):
        return None
    return None


def read_scalars(data: bytes, max_records: int = 10_000_000) -> Events:
    """Every scalar of an event file's bytes, in file order, with counts of what was skipped and why."""
    ev = Events()
    for k, body in _records(data, max_records, ev):
        ev.records += 1
        try:
            _event(body, ev)
        except (_Corrupt, struct.error, UnicodeDecodeError) as e:
            raise TFEventsError(f"record {k}: not a valid Event protobuf ({e})") from None
    return ev


def _event(body: bytes, ev: Events) -> None:
    wall, step, summaries, other = 0.0, 0, [], None
    for num, wt, val in _fields(body):
        if num == 1 and wt == 1:
            wall = struct.unpack("<d", val)[0]
        elif num == 2 and wt == 0:
            step = _signed64(val)
        elif num == 5 and wt == 2:
            summaries.append(val)
        elif num == 3:
            other = other or "file_version"
        else:
            other = {4: "graph_def", 6: "log_message", 7: "session_log", 8: "run_metadata",
                     9: "meta_graph_def", 10: "source_metadata"}.get(num, f"event field {num}")
    if other and not summaries:
        if other not in ("file_version", "source_metadata"):  # writer bookkeeping, not data
            ev.skip(f"{other} events (not scalars)")
        return
    for summary in summaries:
        for num, wt, val in _fields(summary):
            if num == 1 and wt == 2:
                _value(val, step, wall, ev)


def _value(buf: bytes, step: int, wall: float, ev: Events) -> None:
    tag, value, why = "", None, "summary value without a number"
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 2:
            tag = val.decode("utf-8")
        elif num == 2 and wt == 5:
            value = struct.unpack("<f", val)[0]
        elif num == 8 and wt == 2:
            got = _tensor_scalar(val)
            value, why = (got, why) if isinstance(got, float) else (None, got)
        elif num in (3, 5):
            why = "histogram"
        elif num == 4:
            why = "image"
        elif num == 6:
            why = "audio"
    if value is None:
        ev.skip(why, tag)
    else:
        ev.scalars.append(Scalar(tag, step, wall, float(value)))
