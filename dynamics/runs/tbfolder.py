"""TensorBoard log folders as one run: a directory, or a zip of one, whose event files are merged.

What everyone has after training is a log directory (`runs/exp1/` holding `events.out.tfevents.*`, one file per
start of the writer), not one event file. `folder_events(path)` and `zip_events(data)` collect its event files
as (relative name, path or bytes); dynamics.runs.imports then reads them with dynamics.runs.tfevents_fast (files
in chunks, never whole) and merges them.

Rules:
- an event file is a file whose name holds `tfevents` or whose first 12 bytes are an event-file record header
  (the length CRC matches: a renamed event file counts); every other file is skipped and listed;
- order: by directory, then by the writer's start time (the wall time of the file's first record, else the
  `<unix seconds>` in `events.out.tfevents.<unix seconds>.…`), then by name; files without a time come
  after. Values are concatenated in that order and, for a (tag, step) logged more than once (a resumed
  run), the later value wins;
- event files in subfolders of the folder that holds the first ones are other TensorBoard runs (e.g.
  `train/`, `val/`): their tags are prefixed with the subfolder (`val/loss`), as TensorBoard shows them; the
  folder that all event files share is the run (its name is the default run name);
- bounds: at most MAX_EVENT_FILES event files and MAX_ENTRIES entries looked at; the event files together are
  at most Limits.max_bytes (a folder counts as one file) and, in a zip, Limits.max_unzipped_bytes
  uncompressed. Links are not followed; zip entries with absolute, drive, backslash or `..` paths, links and
  special files are refused; entries are read into memory by name, never extracted, and never executed.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .import_checks import fail
from .tfevents import TFEventsError, first_wall_time, looks_like_events
from .tfevents_fast import Columns, read_columns

__all__ = ["MAX_EVENT_FILES", "MAX_ENTRIES", "merge", "folder_events", "zip_events", "zip_holds_events", "order",
           "is_event_name", "digest", "open_zip", "unsafe"]

MAX_EVENT_FILES = 1000
MAX_ENTRIES = 10_000
_TIME = re.compile(r"tfevents\.(\d{1,12})")


def is_event_name(name: str) -> bool:
    return "tfevents" in PurePosixPath(name).name.lower()


Blob = "bytes | Path"  # an event file's bytes, or the path of a file read in chunks when merged


def open_blob(blob) -> io.BufferedIOBase:
    """A binary stream over an event file's bytes (no copy) or its path."""
    return open(blob, "rb") if isinstance(blob, Path) else io.BytesIO(blob)


def _head(blob) -> bytes:
    """The first record of an event file (header, body, CRC; a body over 1 MB is cut): enough for its start time."""
    if not isinstance(blob, Path):
        return blob[:12 + 2 ** 20 + 4]
    try:
        with open(blob, "rb") as fh:
            head = fh.read(12)
            if len(head) == 12:
                head += fh.read(min(int.from_bytes(head[:8], "little"), 2 ** 20) + 4)
            return head
    except OSError:
        return b""


def order(blobs: dict) -> list[tuple[str, Blob]]:
    """Merge order: directory, then the writer's start time (the first record's wall time, else the time in
    the name), then the name."""
    def key(n: str):
        p = PurePosixPath(n)
        t = first_wall_time(_head(blobs[n]))
        m = _TIME.search(p.name)
        t = t if t is not None else float(m.group(1)) if m else None
        return (str(p.parent), t is None, t or 0.0, p.name)
    return [(n, blobs[n]) for n in sorted(blobs, key=key)]


def merge(blobs: list[tuple[str, Blob]], max_records: int, skip) -> Columns:
    """Event files in merge order -> one Columns (tags of subfolder files prefixed, codes into the union of
    the tags), values in merge order; skip(what, why) lists what is not a scalar. Files given by path are read
    in chunks (dynamics.runs.tfevents_fast). A (tag, step) logged again later is resolved by the caller
    (dynamics.runs.scalars.to_table keeps the later value)."""
    prefix, _ = prefixes([n for n, _ in blobs])
    parts, records, tags, index = [], 0, [], {}
    for name, data in blobs:
        label = f"{name}: " if len(blobs) > 1 else ""
        try:
            with open_blob(data) as fh:
                ev = read_columns(fh, max_records=max_records - records)
        except TFEventsError as e:
            raise fail(f"{label}{e}") from None
        except OSError as e:
            raise fail(f"cannot read {name}: {e.strerror or e}") from None
        records += ev.records
        for why, (count, which) in ev.skipped.items():
            skip(f"{label}{count} value(s)" + (f" ({', '.join(which)})" if which else ""), why)
        if ev.truncated:
            skip(f"{label}a cut last record", ev.truncated)
        lut = np.array([index.setdefault(prefix[name] + t, len(index)) for t in ev.tags], dtype=np.int32)
        parts.append(Columns(code=lut[ev.code] if len(lut) else ev.code, step=ev.step, value=ev.value))
    tags = sorted(index, key=index.get)
    out = Columns(tags, *(_join([getattr(q, f) for q in parts]) for f in ("code", "step", "value")),
                  records=records)
    if not len(out.value):
        raise fail(f"no scalar summaries in the event file{'s' if len(blobs) > 1 else ''} ({records} records); "
                   f"expected scalars logged with add_scalar")
    return out


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def prefixes(names: list[str]) -> tuple[dict[str, str], str]:
    """name -> tag prefix ("" for files in the common folder, "sub/" for those below), and the common folder."""
    dirs = [PurePosixPath(n).parent.parts for n in names]
    common: tuple[str, ...] = dirs[0] if dirs else ()
    for d in dirs[1:]:
        k = 0
        while k < min(len(common), len(d)) and common[k] == d[k]:
            k += 1
        common = common[:k]
    out = {n: "/".join(d[len(common):]) + "/" if len(d) > len(common) else "" for n, d in zip(names, dirs)}
    return out, "/".join(common)


def folder_events(folder: Path, max_bytes: int) -> tuple[list[tuple[str, bytes]], list[dict[str, str]]]:
    """Event files under `folder` (relative POSIX names, bytes) in merge order, and the skipped files."""
    found: list[str] = []
    other: list[str] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            seen += 1
            if seen > MAX_ENTRIES:
                raise fail(f"{folder} holds more than {MAX_ENTRIES} files; point at the log folder of one run")
            full = Path(dirpath) / f
            rel = full.relative_to(folder).as_posix()
            try:
                st = full.lstat()
            except OSError:
                other.append(rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                other.append(rel)  # a link or special file: not followed
                continue
            if is_event_name(f) or (st.st_size >= 12 and _sniff(full)):
                found.append(rel)
            else:
                other.append(rel)
    if not found:
        raise fail(f"no TensorBoard event files in the folder {folder.name or folder} (found "
                   f"{len(other)} other file(s){': ' + ', '.join(other[:3]) if other else ''}); expected "
                   f"events.out.tfevents.* files")
    if len(found) > MAX_EVENT_FILES:
        raise fail(f"{len(found)} event files in {folder.name} (limit {MAX_EVENT_FILES}); import one run's folder")
    total = sum((folder / n).stat().st_size for n in found)
    if total > max_bytes:
        raise fail(f"the event files in {folder.name} are too large together: {total / 2 ** 20:.1f} MB (limit "
                   f"{max_bytes / 2 ** 20:.0f} MB)")
    return order({n: folder / n for n in found}), _skipped(other)


def _sniff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return looks_like_events(fh.read(12))
    except OSError:
        return False


def _skipped(other: list[str]) -> list[dict[str, str]]:
    if not other:
        return []
    shown = ", ".join(other[:5]) + (f", … ({len(other) - 5} more)" if len(other) > 5 else "")
    return [{"what": f"{len(other)} other file(s) ({shown})", "why": "not TensorBoard event files"}]


def unsafe(info: zipfile.ZipInfo) -> str | None:
    name, mode = info.filename, info.external_attr >> 16
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name or \
            ".." in name.split("/") or "\x00" in name:
        return f"zip entry {name!r} has an unsafe path (absolute, drive, backslash or '..')"
    if stat.S_ISLNK(mode) or stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"zip entry {name!r} is a link or special file; zip plain files only"
    return None


def open_zip(src) -> zipfile.ZipFile:
    """A zip file from its path or its bytes (read by name, never extracted)."""
    return zipfile.ZipFile(src if isinstance(src, Path) else io.BytesIO(src))


def zip_holds_events(src) -> bool:
    """True when the zip's entries name event files (`tfevents`) and no run.json: a zipped TensorBoard folder."""
    try:
        names = open_zip(src).namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError):
        return False
    base = [PurePosixPath(n).name for n in names[:MAX_ENTRIES + 1]]
    return any(is_event_name(b) for b in base) and "run.json" not in base


def zip_events(src, max_bytes: int, max_unzipped: int
               ) -> tuple[list[tuple[str, bytes]], list[dict[str, str]]]:
    """Event-file entries of a zipped log folder (a path or bytes) as (names, bytes) in merge order, and the
    skipped entries. Only entries whose name holds `tfevents` are read; the rest are listed, never decompressed."""
    try:
        zf = open_zip(src)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) as e:
        raise fail(f"not a readable zip file ({e})") from None
    if len(infos) > MAX_ENTRIES:
        raise fail(f"zip has {len(infos)} entries (limit {MAX_ENTRIES}); zip the log folder of one run")
    wanted, other = [], []
    for info in infos:
        if (why := unsafe(info)):
            raise fail(why)
        parts = [q for q in info.filename.split("/") if q]
        if info.is_dir() or not parts:
            continue
        if parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
            other.append(info.filename)
        elif is_event_name(parts[-1]):
            wanted.append(info)
        else:
            other.append(info.filename)
    if len(wanted) > MAX_EVENT_FILES:
        raise fail(f"zip holds {len(wanted)} event files (limit {MAX_EVENT_FILES}); zip one run's log folder")
    total = sum(i.file_size for i in wanted)
    if total > min(max_bytes, max_unzipped):
        raise fail(f"the zipped event files are too large: {total} bytes uncompressed (limit "
                   f"{min(max_bytes, max_unzipped)})")
    blobs: dict[str, bytes] = {}
    for info in wanted:
        try:
            with zf.open(info) as fh:
                blob = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
            raise fail(f"damaged zip entry {info.filename} ({e})") from None
        if len(blob) != info.file_size:
            raise fail(f"zip entry {info.filename} does not match its declared size; the zip is damaged")
        name = "/".join(q for q in info.filename.split("/") if q)
        if name in blobs:
            raise fail(f"zip holds {name} twice")
        blobs[name] = blob
    return order(blobs), _skipped(other)


def digest(blobs: list) -> tuple[int, str]:
    """(bytes, sha256) of the files (bytes or paths, read in chunks) taken one after another."""
    h, n = hashlib.sha256(), 0
    for b in blobs:
        if isinstance(b, Path):
            try:
                with open(b, "rb") as fh:
                    while chunk := fh.read(2 ** 23):
                        h.update(chunk)
                        n += len(chunk)
            except OSError as e:
                raise fail(f"cannot read {b.name}: {e.strerror or e}") from None
        else:
            h.update(b)
            n += len(b)
    return n, h.hexdigest()
