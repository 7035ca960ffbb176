"""The fast event-file reader: compiled protobuf (the `protobuf` package's upb backend) and compiled CRC32C
(`google-crc32c`), streaming the file in chunks into columns. dynamics.runs.tfevents stays the reference.

Same rules as the reference reader (dynamics.runs.tfevents): records `uint64 length | masked_crc32c(length) |
data | masked_crc32c(data)`, both CRCs checked, a cut last record ends the read with a note, steps int64,
Summary.Value.simple_value or a one-element TensorProto is a scalar, everything else is counted as skipped.
The messages (Event, Summary, Summary.Value, TensorProto, with only the fields we read) are built at import time
from a descriptor (proto2, so presence is known); the tag is declared `bytes` and decoded as UTF-8 once per
distinct tag. Any event that is not a plain summary (file_version, graphs, unknown fields) is handed to the
reference decoder, so skip reasons read the same. Parsing never executes anything.

`read_columns(stream, max_records)` reads a binary stream `chunk` bytes at a time and returns Columns: the
distinct tags, and per scalar a tag code (int32), a step (int64) and a value (float64): 20 bytes a scalar
instead of a Python object each. Without protobuf's compiled backend or google-crc32c, it runs the reference
decoder over the same chunked framing (`FAST` says which).
"""
from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from . import tfevents as ref

__all__ = ["FAST", "Columns", "read_columns", "masked_crc32c"]

CHUNK = 8 * 2 ** 20


def _messages():
    """Event, built from a descriptor at run time (the field numbers of tensorflow/core/util/event.proto,
    summary.proto and tensor.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.internal import api_implementation
    if api_implementation.Type() == "python":
        raise ImportError("protobuf's compiled backend is not available")
    F = descriptor_pb2.FieldDescriptorProto
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    fdp = descriptor_pb2.FileDescriptorProto(name="dynamics_tfevents.proto", package="dynamics_tfevents",
                                             syntax="proto2")

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, *tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = f".dynamics_tfevents.{tname[0]}"
            if label == rep and ftype != F.TYPE_BYTES:
                f.options.packed = True  # accepted packed or not when parsing
    msg("Tensor", [("dtype", 1, F.TYPE_INT32, opt), ("tensor_content", 4, F.TYPE_BYTES, opt),
                   ("float_val", 5, F.TYPE_FLOAT, rep), ("double_val", 6, F.TYPE_DOUBLE, rep),
                   ("int_val", 7, F.TYPE_INT32, rep), ("int64_val", 10, F.TYPE_INT64, rep)])
    msg("Value", [("tag", 1, F.TYPE_BYTES, opt), ("simple_value", 2, F.TYPE_FLOAT, opt),
                  ("old_histo", 3, F.TYPE_BYTES, opt), ("image", 4, F.TYPE_BYTES, opt),
                  ("histo", 5, F.TYPE_BYTES, opt), ("audio", 6, F.TYPE_BYTES, opt),
                  ("tensor", 8, F.TYPE_MESSAGE, opt, "Tensor")])
    msg("Summary", [("value", 1, F.TYPE_MESSAGE, rep, "Value")])
    msg("Event", [("wall_time", 1, F.TYPE_DOUBLE, opt), ("step", 2, F.TYPE_INT64, opt),
                  ("summary", 5, F.TYPE_MESSAGE, opt, "Summary")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("dynamics_tfevents.Event"))


try:
    import google_crc32c
    from google.protobuf.message import DecodeError
    _Event = _messages()
    if google_crc32c.implementation != "c":
        raise ImportError("google-crc32c has no compiled extension here")
    _crc = google_crc32c.value
    FAST = True
except ImportError:  # a missing compiled package: the reference code, same results, slower
    _Event, _crc, FAST = None, ref.crc32c, False
    DecodeError = ValueError


def masked_crc32c(data) -> int:
    c = _crc(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass
class Columns:
    """Scalars as columns: tags[code[i]] at step[i] has value[i]; skipped/records/truncated as in Events."""
    tags: list[str] = field(default_factory=list)
    code: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    skipped: dict[str, list] = field(default_factory=dict)
    records: int = 0
    truncated: str = ""


def read_columns(fh: BinaryIO, max_records: int = 10_000_000, chunk: int = CHUNK, fast: bool | None = None
                 ) -> Columns:
    """Every scalar of an event-file stream, in file order, as Columns; damage raises TFEventsError (the
    reference framing: both CRCs checked, a cut last record noted). fast=False forces the reference decoder
    (pure Python) over the same framing. One loop, locals bound: it runs once per record."""
    fast = FAST if fast is None else fast and FAST
    ev = ref.Events()
    codes, steps, values = array("i"), array("q"), array("d")
    tag_code: dict = {}
    tags: list = []
    parse, crc, unpack = (_Event.FromString if fast else None), _crc, struct.unpack_from
    put_code, put_step, put_value, code_get = codes.append, steps.append, values.append, tag_code.get
    buf, pos, base, k, eof, need = b"", 0, 0, 0, False, 0
    try:
        while not eof:
            more = fh.read(chunk) if need <= chunk else fh.read()  # a record longer than a chunk: the rest
            need = 0
            eof = not more
            buf, base, pos = buf[pos:] + more, base + pos, 0
            n = len(buf)
            while pos + 12 <= n:
                length, hcrc = unpack("<QI", buf, pos)
                c = crc(buf[pos:pos + 8])
                if (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF != hcrc:
                    raise ref.TFEventsError(f"record {k} at byte {base + pos}: length CRC mismatch (not an event "
                                            f"file, or damaged)")
                start = pos + 12
                end = start + length
                if end + 4 > n:
                    need = end + 4 - n
                    break
                body = buf[start:end]
                c = crc(body)
                if (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF != unpack("<I", buf, end)[0]:
                    raise ref.TFEventsError(f"record {k} at byte {base + pos}: data CRC mismatch (damaged file)")
                if k >= max_records:
                    raise ref.TFEventsError(f"too many records (more than {max_records}); raise the rows limit")
                k += 1
                pos = end + 4
                if fast:
                    e = parse(body)
                    vals = e.summary.value
                    if vals:  # a plain summary: the hot path
                        step = e.step
                        for v in vals:
                            got = v.simple_value
                            if not got and not v.HasField("simple_value"):
                                got = _tensor(v.tensor) if v.HasField("tensor") else _why(v)
                                if not isinstance(got, float):
                                    ev.skip(got, v.tag.decode("utf-8"))
                                    continue
                            tag = v.tag
                            code = code_get(tag)
                            if code is None:
                                code = tag_code[tag] = len(tags)
                                tags.append(tag.decode("utf-8"))
                            put_code(code)
                            put_step(step)
                            put_value(got)
                        continue
                ev.scalars.clear()
                ref._event(body, ev)  # not a plain summary (or no compiled parser): the reference decoder
                for s in ev.scalars:
                    key = s.tag.encode("utf-8")  # the fast path's keys are the tag's bytes
                    code = tag_code.get(key)
                    if code is None:
                        code = tag_code[key] = len(tags)
                        tags.append(s.tag)
                    codes.append(code)
                    steps.append(s.step)
                    values.append(s.value)
    except (DecodeError, ref._Corrupt, struct.error, UnicodeDecodeError, RecursionError) as e:
        raise ref.TFEventsError(f"record {k - 1}: not a valid Event protobuf ({e})") from None
    rest = len(buf) - pos
    if rest:
        at = base + len(buf)
        length = f", {unpack('<Q', buf, pos)[0]} bytes" if rest >= 12 else ""
        ev.truncated = f"the last record (record {k}{length}) is cut off at byte {at}: read up to the cut"
    ev.records = k
    return Columns(tags, np.frombuffer(codes, np.int32) if codes else np.zeros(0, np.int32),
                   np.frombuffer(steps, np.int64) if steps else np.zeros(0, np.int64),
                   np.frombuffer(values, np.float64) if values else np.zeros(0, np.float64),
                   ev.skipped, ev.records, ev.truncated)


_DT = {1: 4, 2: 8, 3: 4, 9: 8}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64: element size


def _tensor(t) -> float | str:
    """A TensorProto holding exactly one number -> that number; otherwise a reason (the reference's rules)."""
    values = [*t.float_val, *t.double_val, *map(float, t.int_val), *map(float, t.int64_val)]
    dtype = t.dtype
    if dtype not in _DT:
        return f"tensor of dtype {dtype} (not a number)"
    if t.HasField("tensor_content"):
        content, size = t.tensor_content, _DT[dtype]
        if len(content) != size:
            return f"tensor with {len(content) // size} elements (not a scalar)"
        return float(struct.unpack(ref._DT[dtype][0], content)[0])
    if len(values) != 1:
        return f"tensor with {len(values)} elements (not a scalar)"
    return float(values[0])


def _why(v) -> str:
    """Why a summary value without a number is skipped (the last kind field present, as the reference)."""
    why = "summary value without a number"
    for name, what in (("old_histo", "histogram"), ("image", "image"), ("histo", "histogram"),
                       ("audio", "audio")):
        if v.HasField(name):
            why = what
    return why
