"""A run's logged values as compact columns, and the one place they become a metrics table: `Scalars` and
`to_table`.

Every reader of dynamics.runs.formats and of the trackers (dynamics.runs.mlflow, .trackio, .wandb_offline) hands
its values over as Scalars: per value a step (int64), a layer (int16), a metric code (int32, into `metrics`)
and the value (float64), 22 bytes a value instead of a Python object each; readers validate steps and layers
where they still know the row (for the message), and name them by `keyed` (the naming rule of
dynamics.runs.formats.split_name, run once per distinct key). `to_table` then checks and sorts without pandas:

- names: stripped, non-empty, at most 200 characters, no control or format character; distinct metric names
  at most Limits.max_metrics (a metric picker lists them), checked first;
- the key (step, layer, metric) is packed into one int64, (step − min) · L · M + (layer − min) · M + metric, and
  sorted in place together with the row number (key · n + row, when that fits in 63 bits; else an argsort, else
  step ranks); duplicates are then neighbours: an error naming the key, or, with `later_wins`, the later row
  kept and the others counted in one note (a resumed run, a value logged twice);
- bounds: distinct steps (Limits.max_steps), steps × layers (Limits.max_grid), the largest layer.
The work is done `CHUNK` rows at a time, so besides the columns themselves it holds about one more column:
20 M values peak near 0.6 GB. Time is linear in the values but for the sort (n log n, in C).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from . import store
from .import_checks import bad_char, fail
from .store import LAYER, METRIC, STDERR, STEP, VALUE

__all__ = ["Scalars", "Builder", "keyed", "to_table", "summary", "CHUNK"]
CHUNK = 1 << 20
_MAX_NAME = 200


@dataclass
class Scalars:
    """Values as columns: metrics[metric[i]] at (step[i], layer[i]) is value[i] (stderr[i])."""
    step: np.ndarray     # int64 ≥ 0
    layer: np.ndarray    # int16 ≥ −1 (−1: a network scalar)
    metric: np.ndarray   # int32 codes into metrics
    value: np.ndarray    # float64, NaN allowed
    metrics: list[str]
    stderr: np.ndarray | None = None



class Builder:
    """Scalars gathered part by part into preallocated columns (no list of parts, no concatenation at the
    end): `capacity` values (grown by half when exceeded). done(metrics) -> Scalars."""
    _DTYPES = {"step": np.int64, "layer": np.int16, "metric": np.int32, "value": np.float64, "stderr": np.float64}

    def __init__(self, capacity: int, stderr: bool = False) -> None:
        self.n = 0
        self.cols = {f: np.empty(max(capacity, 1), d) for f, d in self._DTYPES.items() if f != "stderr" or stderr}

    def add(self, step, layer, metric, value, stderr=None) -> None:
        m = len(value)
        if self.n + m > len(self.cols["value"]):
            cap = max(self.n + m, len(self.cols["value"]) * 3 // 2)
            for f, a in self.cols.items():
                grown = np.empty(cap, a.dtype)
                grown[:self.n] = a[:self.n]
                self.cols[f] = grown
                del a
        got = {"step": step, "layer": layer, "metric": metric, "value": value, "stderr": stderr}
        for f, a in self.cols.items():
            a[self.n:self.n + m] = got[f]
        self.n += m

    def done(self, metrics: list[str]) -> Scalars:
        c = {f: a[:self.n] for f, a in self.cols.items()}
        self.cols = {}
        return Scalars(c["step"], c["layer"], c["metric"], c["value"], metrics, c.get("stderr"))


class MetricNames(list):
    """Metric names with the key each was logged under (`logged_as`: `layer_<ℓ>/h_sq` for h_sq), for captions."""

    def __init__(self, names=(), logged_as: dict[str, str] | None = None) -> None:
        super().__init__(names)
        self.logged_as = dict(logged_as or {})


def keyed(names: list[str], split: Callable[[str], tuple[int, str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Logged keys -> (layer per key int16, metric code per key int32, metric names), by the naming rule
    `split`. Two keys that name one (layer, metric) (`layer_3/h_sq` and `h_sq/3`) are refused: their values
    would be mixed."""
    pairs = [split(n) for n in names]
    metrics = sorted({m for _, m in pairs})
    code = {m: i for i, m in enumerate(metrics)}
    seen: dict[tuple[int, str], str] = {}
    for n, p in zip(names, pairs):
        if (other := seen.setdefault(p, n)) != n:
            raise fail(f"keys {other[:60]!r} and {n[:60]!r} both name the metric {p[1][:60]!r} at layer {p[0]} "
                       f"(the naming rule); rename one")
    if big := [ell for ell, _ in pairs if ell >= 2 ** 15]:
        raise fail(f"layer {big[0]} is not an integer in -1..{2 ** 15 - 1} (the layers limit)")
    layer = np.array([ell for ell, _ in pairs], dtype=np.int16)
    named = MetricNames(metrics)
    for n, (ell, m) in zip(names, pairs):  # the logged key of each metric, its layer written <ℓ>
        named.logged_as.setdefault(m, re.sub(rf"(?<!\d){ell}(?!\d)", "<ℓ>", n, count=1) if ell >= 0 else n)
    return layer, np.array([code[m] for _, m in pairs], dtype=np.int32), named


def _names(sc: Scalars, max_metrics: int) -> None:
    """Strip and check the metric names that are used; merge names equal once stripped; bound their count."""
    used = np.flatnonzero(np.bincount(sc.metric, minlength=len(sc.metrics))) if len(sc.metric) else np.zeros(0, int)
    if len(used) > max_metrics:
        raise fail(f"{len(used)} distinct metric names (limit {max_metrics}); a run's metric picker lists them "
                   f"all: log fewer names, or put the varying part in the layer (`<metric>/<layer>`)")
    clean = [str(sc.metrics[i]).strip() for i in used]
    for name in clean:
        if not name or len(name) > _MAX_NAME:
            raise fail(f"empty or over-long metric name {name[:40]!r} (1 to {_MAX_NAME} characters)")
        if (c := bad_char(name)) is not None:
            raise fail(f"metric name {name[:40]!r} holds the control character U+{ord(c):04X}; names must be "
                       f"printable text")
    names = sorted(set(clean))
    remap = np.zeros(max(len(sc.metrics), 1), np.int32)
    remap[used] = [names.index(n) for n in clean] if len(names) < 64 else \
        np.searchsorted(np.array(names, dtype=object), np.array(clean, dtype=object))
    for s in _slices(len(sc.metric)):
        sc.metric[s] = remap[sc.metric[s]]
    logged = getattr(sc.metrics, "logged_as", {})
    sc.metrics = MetricNames(names, {c: logged[str(sc.metrics[i])] for i, c in zip(used, clean)
                                     if str(sc.metrics[i]) in logged})


def _slices(n: int, size: int = CHUNK):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def to_table(sc: Scalars, limits, later_wins: tuple[str, str] | None = None, skip=None) -> tuple[pa.Table, dict]:
    """Scalars -> (the metrics table of the run format, sorted by step, layer, metric; its summary). Consumes
    `sc` (its columns are dropped as they are used). later_wins: (what, why) of the note for values of one key
    logged more than once, the later kept ("N earlier value(s) of a <what>"); None: such keys are an error.
    skip(what, why) receives the note."""
    n = len(sc.value)
    if not n:
        raise fail("no rows: the file holds a header but no data")
    sc.metric = np.asarray(sc.metric, np.int32)
    _names(sc, limits.max_metrics)
    smin, smax = int(sc.step.min()), int(sc.step.max())
    lmin, lmax = int(sc.layer.min()), int(sc.layer.max())
    if lmax > min(limits.max_layers, 2 ** 15 - 1):
        raise fail(f"layer {lmax} is not an integer in -1..{min(limits.max_layers, 2 ** 15 - 1)} (the layers limit)")
    L, M = lmax - lmin + 1, len(sc.metrics)
    ranks = None
    if (smax - smin + 1) * L * M >= 2 ** 63:  # steps too spread to pack (tokens as steps, 2⁴⁰ apart): ranks
        ranks, code = np.unique(sc.step, return_inverse=True)
        sc.step, smin = code.reshape(-1).astype(np.int64), 0
        del code
    span = (int(sc.step.max()) - smin + 1) * L * M
    key = np.empty(n, np.int64)
    for s in _slices(n):
        key[s] = (sc.step[s] - smin) * (L * M) + (sc.layer[s].astype(np.int64) - lmin) * M + sc.metric[s]
    sc.step = sc.layer = sc.metric = None
    value, stderr = _sort(key, n, span, sc.value, sc.stderr)
    sc.value = sc.stderr = None
    box = list(_dedupe(key, value, stderr, later_wins, skip, (smin, ranks, L, M, lmin, sc.metrics)))
    del key, value, stderr  # _decode drops the key as soon as it is unpacked
    table, summ = _decode(box, (smin, ranks, L, M, lmin), sc.metrics, limits)
    logged = getattr(sc.metrics, "logged_as", {})
    kept = [m for m in summ["per_layer_metrics"] + summ["network_scalars"] if logged.get(m, m) != m]
    if kept:  # the keys behind the names (a tracker's tags), for the pages' captions
        summ["logged_as"] = {m: logged[m] for m in kept[:1000]}
    return table, summ


def _sort(key: np.ndarray, n: int, span: int, value, stderr):
    """Sort key in place (stable: equal keys keep their row order) and gather value/stderr to its order."""
    if span * n < 2 ** 63:  # key · n + row: one in-place sort of distinct numbers, no permutation array
        for s in _slices(n):
            key[s] *= n
            key[s] += np.arange(s.start, s.stop, dtype=np.int64)
        key.sort()
        out = np.empty(n, np.float64)
        se = None if stderr is None else np.empty(n, np.float64)
        for s in _slices(n):
            row = key[s] % n
            out[s] = value[row]
            if se is not None:
                se[s] = stderr[row]
            key[s] //= n
        return out, se
    perm = np.argsort(key, kind="stable")
    key[:] = key[perm]
    return value[perm], None if stderr is None else stderr[perm]


def _dedupe(key, value, stderr, later_wins, skip, code):
    """Neighbours with one key: an error naming it, or (later_wins) the last of each run kept."""
    n = len(key)
    last = np.ones(n, bool)
    for s in _slices(n):
        hi = min(s.stop, n - 1)
        last[s.start:hi] = key[s.start:hi] != key[s.start + 1:hi + 1]
    dropped = n - int(np.count_nonzero(last))
    if not dropped:
        return key, value, stderr
    if later_wins is None:
        first = int(np.flatnonzero(~last)[0])
        smin, ranks, L, M, lmin, metrics = code
        step, layer, metric = _unpack(key[first:first + 1], smin, ranks, L, M, lmin)
        raise fail(f"duplicate keys: step {int(step[0])}, layer {int(layer[0])}, metric "
                   f"{metrics[int(metric[0])]!r} appears {int(np.count_nonzero(key == key[first]))} times "
                   f"({dropped + _runs(last)} rows share a key with another row)")
    if skip is not None:
        skip(f"{dropped} earlier value(s) of a {later_wins[0]}", later_wins[1])
    return key[last], value[last], None if stderr is None else stderr[last]


def _runs(last: np.ndarray) -> int:
    """How many keys appear more than once: runs of equal neighbours (a False followed by the run's True)."""
    return int(np.count_nonzero(~last[:-1] & last[1:])) if len(last) > 1 else 0


def _unpack(key, smin, ranks, L, M, lmin):
    step = key // (L * M) + smin
    rest = key % (L * M)
    step = ranks[step] if ranks is not None else step
    return step, (rest // M + lmin).astype(np.int16), (rest % M).astype(np.int32)


def _decode(box: list, code, metrics: list[str], limits) -> tuple[pa.Table, dict]:
    """[sorted unique keys, values, stderr] -> the table's columns and the summary; distinct steps and the
    grid bounded. The key is dropped once unpacked; steps are unpacked into their final width."""
    smin, ranks, L, M, lmin = code
    key, value, stderr = box
    box.clear()
    n = len(key)
    top = int(_unpack(key[-1:], smin, ranks, L, M, lmin)[0][0])
    wide_step = top > 2 ** 31 - 1  # e.g. tokens seen as the step: the step column widens
    step = np.empty(n, np.int64 if wide_step else np.int32)
    layer = np.empty(n, np.int16)
    metric = np.empty(n, np.int32)
    for s in _slices(n):
        step[s], layer[s], metric[s] = _unpack(key[s], smin, ranks, L, M, lmin)
    del key
    steps = 1 + int(np.count_nonzero(step[1:] != step[:-1]))
    layers_present = np.flatnonzero(np.bincount(layer.astype(np.int64) - lmin, minlength=L)) + lmin
    if steps > limits.max_steps:
        raise fail(f"{steps} distinct steps (limit {limits.max_steps}); log every k-th step")
    if steps * len(layers_present) > limits.max_grid:
        raise fail(f"{steps} distinct steps × {len(layers_present)} layers = {steps * len(layers_present)} grid "
                   f"cells (limit {limits.max_grid}); log fewer steps or layers")
    schema = store.METRICS_SCHEMA_SE if stderr is not None else store.METRICS_SCHEMA
    if wide_step:
        schema = schema.set(schema.get_field_index(STEP), pa.field(STEP, pa.int64()))
    cols = {STEP: pa.array(step), LAYER: pa.array(layer),
            METRIC: pa.DictionaryArray.from_arrays(pa.array(metric), pa.array(metrics, pa.string())),
            VALUE: pa.array(value)}
    if stderr is not None:
        cols[STDERR] = pa.array(stderr)
    table = pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
    return table, summary(step, layer, metric, metrics, layers_present, steps)


def summary(step, layer, metric, metrics, layers_present, steps: int) -> dict:
    """What was understood: counts and ranges of steps and layers, per-layer metrics and network scalars."""
    seen = np.zeros(2 * len(metrics), np.int64)  # per metric: [on layers, on the network]
    for s in _slices(len(step)):
        seen += np.bincount(metric[s].astype(np.int64) * 2 + (layer[s] == store.NETWORK_LAYER),
                            minlength=2 * len(metrics))
    return {"rows": len(step), "steps": steps, "step_range": [int(step[0]), int(step[-1])],
            "layers": int((layers_present >= 0).sum()),
            "layer_range": [int(layers_present[0]), int(layers_present[-1])],
            "per_layer_metrics": [m for m, k in zip(metrics, seen[0::2]) if k],
            "network_scalars": [m for m, k in zip(metrics, seen[1::2]) if k]}


# --- the naming rule (TensorBoard tags, W&B columns, tracker keys) ---------------------------------------------
_LAYER_FIRST = re.compile(r"^layer[_-]?(\d{1,9})/([^/]+)$")
_METRIC_FIRST = re.compile(r"^([^/]+)/(?:layer[_-]?)?(\d{1,9})$")


def split_name(name: str) -> tuple[int, str]:
    """`layer_7/h_sq` or `h_sq/7` -> (7, "h_sq"); anything else -> (-1, name) (a network scalar)."""
    if m := _LAYER_FIRST.match(name):
        return int(m.group(1)), m.group(2)
    if m := _METRIC_FIRST.match(name):
        return int(m.group(2)), m.group(1)
    return store.NETWORK_LAYER, name
