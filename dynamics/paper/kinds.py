"""What each kind of statement of the paper asks of the data (docs/theory.md §8), and the verdict that follows.

A claim's statistic comes with a 95% interval and a named alternative (dynamics.paper.stats). Its `kind` says which
values the paper's statement allows and so how the interval is read:

    rate       an exact rate r ("the coupling vanishes at O(1/n) at initialisation"): the paper's set is {r};
    bound      an upper bound r on a rate ("the error is O(1/L)"): falling faster is consistent, set (−∞, r];
    persists   does not vanish as the size grows ("survives n → ∞"): set [0, ∞); the alternative is the named
               decay (e.g. −1, a finite-width effect), or every decay (side 'le' 0);
    vanishes   goes to 0 as the size grows: set (−∞, 0), the alternative no decay (slope 0, or side 'ge' 0);
    contrast   a paired difference of one statistic between two settings (setting − reference): the paper's set is
               the sign it states, (0, ∞) or (−∞, 0), the alternative 0 (the settings do not differ).

The verdict is then the same for every kind: *agrees* when the interval meets the paper's set and excludes the
alternative, *disagrees* when it misses the set (a bound: the data fall slower; persists: the interval shows decay;
vanishes: growth; a contrast: the other sign), *inconclusive* otherwise, with the seeds that would decide it.
Before any of that, a statistic that is not identified (stats.Interval.identified False: a fit whose bootstrap
piles on its grid or drops a term, an interval that ends at its estimate) is *inconclusive: not identified*, with
the design that would identify it.
"""
from __future__ import annotations

import math

from . import stats as S

KINDS = ("rate", "bound", "persists", "vanishes", "contrast")
_WHY_DISAGREES = {"bound": "the data fall slower than the bound",
                  "persists": "the interval lies in decay",
                  "vanishes": "the interval lies in growth",
                  "contrast": "the difference has the other sign",
                  "rate": "the interval excludes the rate"}


def paper_set(kind: str, value: float | None = None) -> tuple[float, float]:
    """The values of the statistic the paper's statement allows (see the module docstring). `value`: the rate of
    a rate or bound; the sign of a contrast (+1: setting above the reference, −1: below; default +1)."""
    if kind == "rate":
        return (float(value), float(value))
    if kind == "bound":
        return (-math.inf, float(value))
    if kind == "persists":
        return (0.0, math.inf)
    if kind == "vanishes":
        return (-math.inf, 0.0)
    if kind == "contrast":
        return (0.0, math.inf) if (value is None or value >= 0) else (-math.inf, 0.0)
    raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")


def judge(kind: str, ci: S.Interval, value: float | None, alt: S.Alternative, *, tol: float = 0.0,
          shown: str = "") -> tuple[str, str]:
    """(verdict, why) of a claim of this kind: not identified -> inconclusive with its diagnosis; else
    stats.verdict against paper_set(kind, value) and the alternative, its words naming the kind's reading
    (`shown` names the paper's set instead where the statistic is not a rate, e.g. a log ratio's bound)."""
    if not ci.identified:
        return "inconclusive", f"not identified: {ci.diagnosis}"
    verdict, why = S.verdict(ci, paper_set(kind, value), alt, tol=tol, shown=shown or _shown(kind, value))
    if ci.finite and _ends_on_estimate(ci):
        return "inconclusive", (f"not identified: the 95% interval [{ci.low:.3g}, {ci.high:.3g}] ends at its "
                                f"estimate {ci.value:.3g} (the statistic takes few values over the resamples); "
                                "a finer grid or more seeds would spread it")
    if verdict == "disagrees":
        why = f"{why} ({_WHY_DISAGREES[kind]})"
    return verdict, f"{kind}: {why}"


def _shown(kind: str, value: float | None) -> str:
    if kind == "rate":
        return f"rate {value:g}"
    if kind == "bound":
        return f"bound (≤ {value:g}: falling at least as fast as x^{value:g})"
    if kind == "contrast":
        return "sign (> 0)" if value is None or value >= 0 else "sign (< 0)"
    return {"persists": "range (≥ 0: no decay)", "vanishes": "range (< 0: decay)"}[kind]


def _ends_on_estimate(ci: S.Interval) -> bool:
    """An interval whose end is its estimate: the resamples pile on it, so the interval is not a spread."""
    eps = 1e-9 * max(1.0, abs(ci.value))
    return (ci.high - ci.low) > eps and (abs(ci.low - ci.value) <= eps or abs(ci.high - ci.value) <= eps)
