"""The coordinate check of the μP literature, for width and depth: is every layer's statistic Θ(1)?

`python -m dynamics coordcheck` (check.py) trains a few steps of our ResNet, or of a user's model through a
factory (rungs.py, docs/coordcheck.md), over a ladder of widths and/or depths × seeds; `judge` fits each
(metric, τ, step)'s log-log slope with a seed bootstrap and calls it flat, growing, shrinking or inconclusive
against depth-μP's Θ(1); `ladder` finds ladders among any runs and gathers their metrics (the dashboard's
Coord check page uses it); `figure` draws the classic picture.

    from dynamics.coordcheck import run_check
    summary = run_check(Path("cc"), widths=(64, 128, 256), seeds=4, steps=3)
    summary["verdict"]   # consistent / inconsistent / inconclusive
"""
from __future__ import annotations

from .check import SUMMARY, register, run_check
from .judge import JUDGED, NOT_JUDGED, TOLERANCE, fit_rows, overall
from .ladder import Ladder, find_ladders, gather
from .rungs import CoordCheckError

__all__ = ["run_check", "register", "SUMMARY", "JUDGED", "NOT_JUDGED", "TOLERANCE", "fit_rows", "overall",
           "Ladder", "find_ladders", "gather", "CoordCheckError"]
