"""The Scaling page's views beyond the error panels: a per-layer metric against depth from the chosen runs
(`against_depth`: one line per α or other varying field, seeds averaged, fitted slopes), and the fall-back on the
bundled reproduce points: when the chosen runs do not span two widths or depths (or two learning rates per depth),
the page shows the rates, the metric against depth and the transfer measured by `python -m dynamics reproduce`
from its points files (dashboard.evidence) instead of an empty chart.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import evidence as E, runs as R, widgets as W
from dynamics.figures import claim_figure, lr_transfer_figure

LOSSES = ("loss", "train_loss", "test_loss")


def _claims() -> tuple:
    path = E.find_claims(R.data_dir())
    if path is None:
        return None, []
    try:
        return path, list(E.load(str(path), path.stat().st_mtime_ns)["claims"])
    except (OSError, ValueError, KeyError, TypeError):
        return path, []


def _rate_group(c: dict) -> str:
    """The claim's tab: one per measured quantity and setting (y and the claim's `where`), its width and depth
    claims side by side."""
    where = ", ".join(f"{a} {b}" for a, b in (c.get("where") or {}).items())
    return str(c["y"]) + (f" · {where}" if where else "")


def bundled_rates(page: str, fmt: str) -> bool:
    """The finite-vs-limit error claims (y = err_*, x = width or depth) from their points, in lazy tabs (one per
    quantity and setting, its claims two per row: only the open tab's charts are built and sent, so the page
    opens with two charts to draw, not six); False when there are none."""
    path, claims = _claims()
    rates = [c for c in claims if str(c.get("y", "")).startswith("err_") and c.get("x") in ("width", "depth")]
    if not rates:
        return False
    st.caption("Measured by `python -m dynamics reproduce` (its bundled points; fitted log-log slope, 95% band, "
               "the paper's slope dashed). Open a claim on the Claims page for its runs.")
    groups: dict[str, list[dict]] = {}
    for c in rates:  # the claims' order
        groups.setdefault(_rate_group(c), []).append(c)
    tabs = W.view_tabs(page, list(groups), param="rates") if len(groups) > 1 else [st.container()]
    for tab, group in zip(tabs, groups.values()):
        if not getattr(tab, "open", True):
            continue
        with tab:
            for k in range(0, len(group), 2):
                for col, c in zip(st.columns(2), group[k:k + 2]):
                    with col:
                        _rate_chart(page, fmt, path, c)
    return True


def _rate_chart(page: str, fmt: str, path, c: dict) -> None:
    try:
        rows, _ = E.points(path, c)
    except (OSError, ValueError, KeyError):
        st.caption(f"`{c.get('id')}`: its points file cannot be read.")
        return
    where = ", ".join(f"{a} = {b}" for a, b in (c.get("where") or {}).items())
    alt, words = E.alternative(c)
    fig = claim_figure(rows, x=c["x"], y=c["y"], measured=c.get("measured"), ci=c.get("ci"),
                       paper=c.get("paper_value"), alternative=alt, alternative_words=words,
                       title=f"{c['id']}: {c['y']} vs {c['x']}" + (f" ({where})" if where else ""))
    W.show_chart(fig, rows, f"claim_{c['id']}", key=f"{page}.rate_{c['id']}", fmt=fmt)


def bundled_transfer(page: str, fmt: str) -> bool:
    """Final loss against learning rate per depth from a reproduce points file that holds depth, lr and a
    loss (seeds averaged); False when there is none."""
    path, claims = _claims()
    for c in claims:
        try:
            rows, others = E.points(path, c)
        except (OSError, ValueError, KeyError):
            continue
        df = pd.concat([rows, others])
        loss = next((l for l in LOSSES if l in df), None)
        if loss is None or not {"lr", "depth"} <= set(df) or df.groupby("depth")["lr"].nunique().max() < 2:
            continue
        shown = df.groupby(["depth", "lr"], as_index=False)[loss].mean()
        seeds = df["seed"].nunique() if "seed" in df else 1
        st.caption(f"From the points of `{c.get('id')}` (`python -m dynamics reproduce`): {loss} after training, "
                   f"mean over {seeds} seed(s), at {shown['lr'].nunique()} learning rates × "
                   f"{shown['depth'].nunique()} depths.")
        W.show_chart(lr_transfer_figure(shown, y=loss, title=f"{loss} vs learning rate, per depth (bundled points; "
                                        "★ = best, × = diverged)"), shown, f"{loss}_vs_lr_bundled",
                     key=f"{page}.lr_bundled", fmt=fmt)
        return True
    return False


# a metric's power counting in L, where the theory gives one (docs/theory.md §2, §7), for the caption
POWER = {"a_learn": "power counting (docs/theory.md §7): a_learn ∝ L^(2α−1) in α = inner_lr_exponent, i.e. slope "
                    "−1 at α = 0, 0 at α = 1/2, +1 at α = 1",
         "a_move": "a_move also holds the input-driven part W_ℓ,1(0)Δφ(h_ℓ−1)/√n, Θ(1) in L (docs/theory.md §7)"}
_NOT_GROUPS = ("depth", "seed")
MIN_DEPTHS = 3  # a slope with an interval


def against_depth(page: str, runs: list, fmt: str) -> None:
    """One per-layer metric reduced to its mean over blocks at each run's last recorded step, against depth L on
    log-log axes: one colour per value of a config field that varies among the runs (α first), seeds averaged,
    a fitted slope with its 95% bootstrap interval per colour, for the setting (the same config apart from depth,
    seed and that field) with the most depths. With fewer than MIN_DEPTHS depths there, the bundled reproduce
    points of two-layer blocks stand in (a_learn, else a_move, one line per α: bundled_against_depth)."""
    from dashboard import loaders as D
    from dashboard.selection import varying
    fields = [f for f in varying(runs) if f not in _NOT_GROUPS and f not in D.TRANSFER_FREE]
    order = sorted(fields, key=lambda f: (f != "inner_lr_exponent", f != "width"))
    by = W.choose(page, "by", "One line per", order, order[0]) if order else None
    free = (*D.TRANSFER_FREE, *([by] if by else []))
    fam, n_fam = D.family(runs, [f for f in free if f != "lr"], ("depth", by) if by else ("depth",))
    if len({D.depth_of(r) for r in fam}) < MIN_DEPTHS:
        st.caption(f"The chosen runs hold fewer than {MIN_DEPTHS} depths in one setting, so they make no panel; "
                   "depths from a sweep would: `python -m dynamics sweep --grid 'depth=2,4,8,16 seed=0,1,2 "
                   "inner_lr_exponent=0,0.5,1' --set block=2 --out runs/`.")
        if not bundled_against_depth(page, fmt):
            st.info("No runs at several depths among the chosen runs or the bundled points.")
        return
    catalog, errors = R.metric_catalog(fam)
    layered = [m for m, (net, _) in catalog.items() if not net]
    if not layered:
        return
    metric = W.choose(page, "against", "Metric (mean over blocks, last step)", layered,
                      "a_learn" if "a_learn" in layered else ("h_move" if "h_move" in layered else layered[0]))
    if n_fam > 1:
        st.caption(f"The chosen runs form {n_fam} settings (apart from depth, seed and {by or 'nothing else'}); "
                   f"showing the one with the most depths ({len(fam)} runs). Pick runs in the sidebar to change it.")
    pts, more = D.depth_means(fam, metric, [by] if by else [])
    R.show_problems(errors + more)
    if pts.empty:
        st.caption(f"None of the chosen runs recorded `{metric}`.")
        return
    if by is None:
        by = "setting"
        pts = pts.assign(setting="all")
    _against_chart(page, fmt, pts, by, metric, "")


def _against_chart(page: str, fmt: str, pts: pd.DataFrame, by: str, metric: str, source: str) -> None:
    """Seed means per (by, depth) of pts' `value`, one fitted line per value of `by`, and the caption."""
    from dynamics.figures import error_scaling_figure
    from dynamics.paper.fits import fit_groups
    means = (pts[pts["value"] > 0].groupby([by, "depth"], as_index=False)
             .agg(value=("value", "mean"), seeds=("value", "size")))
    fits = fit_groups(means, "depth", "value", by, n_boot=1000, seed=0)
    seeds = int(means["seeds"].max()) if len(means) else 0
    W.show_chart(error_scaling_figure(means, fits, x="depth", group=by, theory_slope=None, y="value",
                                      title=f"{metric} against depth (mean over blocks at the last step; "
                                            + (f"{seeds} seeds averaged" if seeds > 1 else "one seed")
                                            + f"{source})",
                                      y_title=f"{metric}, mean over blocks"),
                 means, f"{metric}_vs_depth", key=f"{page}.against", fmt=fmt)
    note = POWER.get(metric)
    st.caption("Fitted log-log slope per line with its 95% bootstrap interval (over depths). "
               + (note + "." if note else ""))


def bundled_against_depth(page: str, fmt: str) -> bool:
    """a_learn (else a_move) of two-layer blocks against depth from the bundled reproduce points, one line per α
    at the width its claims read (seeds averaged, a fitted slope per α); False when the bundle has none."""
    path, claims = _claims()
    for y in ("a_learn", "a_move"):
        c = next((c for c in claims if c.get("y") == y and c.get("x") == "depth" and "width" in (c.get("where") or {})),
                 None)
        if c is None:
            continue
        try:
            rows, others = E.points(path, c)
        except (OSError, ValueError, KeyError):
            continue
        df = pd.concat([rows, others])
        width = c["where"]["width"]
        df = df[(df["width"] == width)].rename(columns={y: "value"}).assign(inner_lr_exponent=lambda d: d["alpha"])
        if df.empty or df["depth"].nunique() < 2:
            continue
        st.caption(f"From the bundled points of `{c['id']}` and its sibling claims (`python -m dynamics "
                   f"reproduce`): finite two-layer-block nets at width {width}, one line per inner-LR exponent α.")
        _against_chart(page, fmt, df, "inner_lr_exponent", y, f", bundled points at n = {width}")
        return True
    return False
