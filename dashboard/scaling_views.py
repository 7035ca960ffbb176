"""The Scaling page's fall-back on the bundled reproduce points: when the chosen runs do not span two widths or
depths (or two learning rates per depth), the page shows the rates and the transfer measured by
`python -m dynamics reproduce` from its points files (dashboard.evidence) instead of an empty chart.
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
