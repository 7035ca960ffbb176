"""CSV downloads that a spreadsheet opens as data, never as formulas.

Uploaded runs carry text chosen by strangers (config values, metric names, run labels). A cell that starts
with `=`, `+`, `-`, `@`, a tab or a carriage return is read by Excel, LibreOffice and Google Sheets as a
formula (`=cmd|' /C calc'!A0`, `@SUM(…)`): `csv_bytes` prefixes such text cells with `'`, the spreadsheet
convention for "this is text" (OWASP's advice against CSV injection). Numbers, including negative ones, are
written as numbers; text that reads as a number (`-1.5`, `-inf`) is left as it is.
"""
from __future__ import annotations

import pandas as pd

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """`value`, with `'` in front when it is text a spreadsheet would read as a formula."""
    if not isinstance(value, str) or not value.startswith(_TRIGGERS):
        return value
    try:
        float(value)
        return value  # "-1.5", "+3", "-inf": a number written as text, not a formula
    except ValueError:
        return "'" + value


def csv_bytes(df: pd.DataFrame) -> bytes:
    """df as UTF-8 CSV (no index) with text cells and column names escaped by escape_cell."""
    out = df.copy(deep=False)
    out.columns = [escape_cell(str(c)) for c in out.columns]
    for c in out.columns:
        if out[c].dtype == object or isinstance(out[c].dtype, (pd.StringDtype, pd.CategoricalDtype)):
            out[c] = out[c].astype(object).map(escape_cell)
    return out.to_csv(index=False).encode()
