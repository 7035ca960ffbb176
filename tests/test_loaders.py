"""The dashboard's uncached run readers (dashboard.loaders.read_catalog / read_grid) against pandas on the same
files, from several threads at once (sessions of one server query the process's one DuckDB together), and a
damaged file."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dashboard import loaders as D
from dynamics.runs.store import LAYER, METRIC, METRICS, NETWORK_LAYER, STEP, VALUE, RunFormatError, read_metrics


def _expected_catalog(run: Path) -> dict:
    df = read_metrics(run)
    out = {}
    for m, g in df.groupby(METRIC):
        out[m] = (bool((g[LAYER] == NETWORK_LAYER).all()), tuple(sorted(int(s) for s in g[STEP].unique())))
    return out


def _expected_grid(run: Path, metric: str) -> np.ndarray:
    df = read_metrics(run, [metric]).pivot_table(index=STEP, columns=LAYER, values=VALUE, aggfunc="first")
    return df.sort_index().sort_index(axis=1).to_numpy()


def test_catalog_and_grid_match_pandas(runs_dir):
    runs = sorted(p for p in runs_dir.iterdir() if (p / METRICS).is_file())
    assert runs
    for run in runs:
        cat = D.read_catalog(str(run))
        assert cat == _expected_catalog(run)
        layered = [m for m, (net, _) in cat.items() if not net]
        g = D.read_grid(str(run), layered[0])
        np.testing.assert_array_equal(g[VALUE], _expected_grid(run, layered[0]))


def test_sessions_query_at_once(runs_dir):
    """Eight threads read catalogs and grids together; each gets what a lone read gets."""
    runs = sorted(str(p) for p in runs_dir.iterdir() if (p / METRICS).is_file())
    alone = {r: (D.read_catalog(r), D.read_grid(r, "h_sq")[VALUE]) for r in runs}
    jobs = runs * 6
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda r: (r, D.read_catalog(r), D.read_grid(r, "h_sq")[VALUE]), jobs))
    for r, cat, grid in got:
        assert cat == alone[r][0]
        np.testing.assert_array_equal(grid, alone[r][1])


def test_damaged_file_is_one_line(tmp_path, runs_dir):
    run = tmp_path / "bad"
    run.mkdir()
    (run / METRICS).write_bytes(b"PAR1 not really parquet")
    with pytest.raises(RunFormatError, match="not a readable Parquet file") as e:
        D.read_catalog(str(run))
    assert "\n" not in str(e.value)
    good = next(p for p in runs_dir.iterdir() if (p / METRICS).is_file())
    assert D.read_catalog(str(good)) == _expected_catalog(good)  # the shared database answers after a failed query
