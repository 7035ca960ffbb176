"""Resource bounds of an import: `Limits` (file, rows, columns, decoded bytes, steps × layers, zip sizes) and
`zip_entry`, which streams one zip entry under its cap with a magic check.

Used by dynamics.runs.imports (the readers check Limits before decoding) and dynamics.runs.sandbox (which
runs an import in a child process under memory and time limits, for what the metadata cannot bound).
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass

from .import_checks import RunImportError, fail as _fail
from .store import RUN_JSON

__all__ = ["MB", "Limits", "zip_entry"]
MB = 2 ** 20


@dataclass(frozen=True)
class Limits:
    """Bounds on what one import may read, decode and write. Decoded size is bounded, not only file size:
    Parquet metadata (rows × columns read, uncompressed bytes) is checked before any column is decoded, zip
    entries are streamed with per-entry caps, distinct steps × layers are capped before a page can build a
    dense grid, and distinct metric names before a page lists them. `Limits.hosted()` is the lower set a shared
    instance uses."""
    max_bytes: int = 200 * MB            # the file (and each sidecar: 1/100 of it)
    max_rows: int = 20_000_000           # rows of a table, records of an event file, melted W&B cells
    max_columns: int = 10_000            # CSV / Parquet columns (W&B exports are wide)
    max_layers: int = 10_000             # largest layer index, and the config's depth
    max_zip_entries: int = 16
    max_unzipped_bytes: int = 400 * MB   # total uncompressed size of a zip (each Parquet entry: max_bytes)
    max_cells: int = 100_000_000         # rows × columns decoded from one CSV / Parquet table
    max_decoded_bytes: int = 2048 * MB   # uncompressed bytes of the Parquet columns read
    max_steps: int = 1_000_000           # distinct recorded steps
    max_grid: int = 50_000_000           # distinct steps × distinct layers (one metric's dense grid)
    max_metrics: int = 10_000            # distinct metric names of a run (a page's metric picker lists them)
    max_runs: int = 1_000                # runs of one tracker folder or database (MLflow, W&B, Trackio)

    @classmethod
    def hosted(cls) -> "Limits":
        """The limits of a shared (hosted) instance: small enough that an import fits its memory bound."""
        return cls(max_bytes=50 * MB, max_rows=1_000_000, max_columns=2_000, max_layers=1_024,
                   max_unzipped_bytes=100 * MB, max_cells=5_000_000, max_decoded_bytes=256 * MB,
                   max_steps=50_000, max_grid=2_000_000, max_metrics=2_000, max_runs=50)


_JSON_CAP = 1 * MB  # run.json inside a zip
_CHUNK = 1 * MB


def zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes:
    """One zip entry, streamed: refused when its declared size is over its cap (run.json: 1 MB; Parquet:
    limits.max_bytes), when its first bytes are not its format's magic (`{` for run.json, PAR1 for Parquet),
    or when it inflates past its declared size; so a zip bomb costs at most one cap of memory."""
    base = info.filename.rsplit("/", 1)[-1]
    cap = _JSON_CAP if base == RUN_JSON else limits.max_bytes
    if info.file_size > cap:
        raise _fail(f"zip entry {info.filename} is {info.file_size} bytes uncompressed (limit {cap})")
    parts, got = [], 0
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(min(_CHUNK, info.file_size + 1 - got)):
                if not parts:
                    head = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")[:4]
                    ok = head[:1] == b"{" if base == RUN_JSON else head == b"PAR1"
                    if not ok:
                        raise _fail(f"zip entry {info.filename} is not {'a JSON object' if base == RUN_JSON else 'a Parquet file (no PAR1 magic)'}")
                parts.append(chunk)
                got += len(chunk)
                if got > info.file_size:
                    break
    except RunImportError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zlib.error) as e:
        raise _fail(f"damaged zip entry {info.filename} ({e})") from None
    if got != info.file_size:
        raise _fail(f"zip entry {info.filename} does not match its declared size; the zip is damaged")
    return b"".join(parts)
