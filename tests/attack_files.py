"""A corpus of hostile uploads, generated on the fly (nothing big is checked in): each entry is one drop on the
Upload page, a list of (file name, bytes), and the phrase its one-line refusal must hold (None: it imports).

Used by tests/test_attacks.py (through the import path and through a served app) and benchmarks/load_test.py
(mixed into the sessions' uploads). Sizes are scaled to the hosted limits (dynamics.runs.import_bounds
Limits.hosted(), dashboard.settings HOSTED_QUOTAS) so each attack crosses one bound, not all of them.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Drop = list[tuple[str, bytes]]


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _csv(rows) -> bytes:
    return ("step,layer,metric,value\n" + "".join(f"{s},{l},{m},{v}\n" for s, l, m, v in rows)).encode()


def _small_run(cfg: dict) -> bytes:
    """A zipped run of ours (run.json + metrics.parquet) with the given config."""
    metrics = pa.table({"step": pa.array([0, 0, 1, 1], pa.int32()), "layer": pa.array([0, 1, 0, 1], pa.int16()),
                        "metric": ["h_sq"] * 4, "value": [1.0, 2.0, 3.0, 4.0]})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("run/run.json", json.dumps({"run_id": "x", "kind": "train", "status": "complete", "config": cfg}))
        z.writestr("run/metrics.parquet", _parquet(metrics))
    return buf.getvalue()


def _zip_bomb(mb: int) -> bytes:
    """A zip whose metrics.parquet entry inflates to `mb` MB of zeros behind a PAR1 magic (≈ mb KB on disk)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("run.json", json.dumps({"config": {"depth": 2}}))
        with z.open("metrics.parquet", "w", force_zip64=True) as fh:
            fh.write(b"PAR1")
            zeros = bytes(2 ** 20)
            for _ in range(mb):
                fh.write(zeros)
    return buf.getvalue()


def corpus(only: tuple[str, ...] | None = None) -> dict[str, tuple[Drop, str | None]]:
    """name -> (drop, phrase of the expected refusal or None for a bounded import); `only`: just these."""
    return {k: (make(), refusal) for k, (make, refusal) in _makers().items() if only is None or k in only}


def _makers() -> dict:
    rng = np.random.default_rng(0)
    n_wide = 300_000  # _step + 20 constant columns: 6.3 M cells, over the hosted 5 M
    wide = lambda: pa.table({"_step": np.arange(n_wide), **{f"c{k}": np.zeros(n_wide) for k in range(20)}})  # noqa: E731
    n_long = 120_000  # one network scalar at 120 000 distinct steps: over the hosted 50 000 steps
    long = lambda: pa.table({"step": np.arange(n_long, dtype=np.int32),  # noqa: E731
                             "layer": np.full(n_long, -1, np.int16), "metric": ["loss"] * n_long,
                             "value": rng.random(n_long)})
    grid = [(s, 0, "h_sq", 1.0) for s in range(3000)] + [(0, l, "h_sq", 1.0) for l in range(1, 1001)]
    bidi = pa.table({"step": pa.array([0, 1], pa.int32()), "layer": pa.array([0, 0], pa.int16()),
                     "metric": ["h_\u202eqs", "h_\u202eqs"], "value": [1.0, 2.0]})
    nul = pa.table({"step": pa.array([0], pa.int32()), "layer": pa.array([0], pa.int16()), "metric": ["h\x00sq"],
                    "value": [1.0]})
    small = _csv([(s, l, "h_sq", 1.0) for s in range(2) for l in range(3)])
    return {
        "hugedepth": (lambda: [("hugedepth.csv", small),
                               ("hugedepth.csv.json", json.dumps({"depth": 10 ** 12}).encode())], "config depth"),
        "width_abc": (lambda: [("widthabc.zip", _small_run({"depth": 2, "width": "abc"}))], "config width"),
        "grid": (lambda: [("grid.csv", _csv(grid))], "grid cells"),
        "wide_parquet": (lambda: [("wide.parquet", _parquet(wide()))], "cells"),
        "long_parquet": (lambda: [("long.parquet", _parquet(long()))], "distinct steps"),
        "zip_bomb": (lambda: [("bomb.zip", _zip_bomb(120))], "uncompressed"),
        "bidi_name": (lambda: [("bidi.parquet", _parquet(bidi))], "U+202E"),
        "nul_name": (lambda: [("nul.parquet", _parquet(nul))], "U+0000"),
        "many_files": (lambda: [(f"junk{k}.csv", small) for k in range(6)], "files in one drop"),
        "big_drop": (lambda: [("big.csv", b"step,layer,metric,value\n" + bytes(55 * 2 ** 20))], "MB in one drop"),
        "formula_config": (lambda: [("formula.csv", small), ("formula.csv.json", json.dumps(
            {"depth": 2, "act": "=cmd|' /C calc'!A0", "task": "@SUM(1+1)*cmd|' /C calc'!A0"}).encode())], None),
        "markdown_column": (lambda: [("mdcol.csv",
                                      b"_step,loss,![x](http://127.0.0.1:9/pixel.png)\n0,1.0,a\n1,0.5,b\n")], None),
    }
