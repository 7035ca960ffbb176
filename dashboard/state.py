"""The state of a view lives in the URL query string, so a link reproduces it.

Pattern for every widget that is part of a view's state (runs, metric, step, ...):

    seed_widget(key, param, options, default)      # before the widget: session → URL → default
    value = st.selectbox(label, options, key=key)  # no `index`/`default`: the session value rules
    set_url(param=value)                           # after the widget: the URL follows the widget

On a fresh browser the session is empty, so `seed_widget` takes the value from the URL; afterwards the
widget's own session value wins and the URL merely mirrors it. URL values are strings and are matched
against `str(option)`, so integer options (steps) round-trip. Values that are not (or no longer) valid
options fall back to the default instead of raising. Lists use repeated parameters (?runs=a&runs=b).
"""
from __future__ import annotations

from typing import Any, Sequence

import streamlit as st


def _by_text(options: Sequence[Any]) -> dict[str, Any]:
    return {str(o): o for o in options}


def url_values(param: str, options: Sequence[Any]) -> list[Any]:
    """The URL's values of `param` that are valid options (as options, not strings), in URL order."""
    by_text = _by_text(options)
    return [by_text[v] for v in st.query_params.get_all(param) if v in by_text]


def seed_widget(key: str, param: str, options: Sequence[Any], default: Any, *, multi: bool = False) -> None:
    """Make `st.session_state[key]` a valid value before the widget with that key is created.

    Order: the widget's current value if still valid (for `multi`: its valid part; an empty selection the
    user made stays empty), else the URL's `param`, else `default`. Call it before the widget; never pass
    `index`/`default` to the widget.
    """
    valid = set(_by_text(options))
    current = st.session_state.get(key)
    if multi:
        kept = [v for v in (current or []) if str(v) in valid]
        if kept or current == []:
            value = kept
        else:
            value = list(dict.fromkeys(url_values(param, options))) or list(default)
    elif current is not None and str(current) in valid:
        value = current
    else:
        from_url = url_values(param, options)
        value = from_url[0] if from_url else default
    if current != value:
        st.session_state[key] = value


def set_url(**params: Any) -> None:
    """Mirror values into the query string: a list → repeated parameter, None or [] → removed.

    Writes only what changed, so a rerun that changes nothing sends nothing to the browser.
    """
    for param, value in params.items():
        wanted = [str(v) for v in value] if isinstance(value, (list, tuple)) else (
            [] if value is None else [str(value)])
        if st.query_params.get_all(param) == wanted:
            continue
        if wanted:
            st.query_params[param] = wanted if len(wanted) > 1 else wanted[0]
        elif param in st.query_params:
            del st.query_params[param]


def seed_range(key: str, param: str, options: Sequence[Any], default: tuple[Any, Any]) -> None:
    """seed_widget for a range slider: the value is a (low, high) pair, in the URL as ?param=low&param=high."""
    valid = set(_by_text(options))
    current = st.session_state.get(key)
    if isinstance(current, (tuple, list)) and len(current) == 2 and all(str(v) in valid for v in current):
        value = tuple(current)
    else:
        from_url = url_values(param, options)
        ok = len(from_url) == 2 and list(options).index(from_url[0]) <= list(options).index(from_url[1])
        value = tuple(from_url) if ok else tuple(default)
    if current != value:
        st.session_state[key] = value


def reopen_when(key: str, token: Any, value: Any) -> None:
    """Set the widget `key` to `value` when `token` (e.g. the shown runs and metric) changed since the widget
    was last seeded in this session, so a view opens where its new runs have data instead of keeping a value
    chosen for others. The first time (a fresh session, a link) nothing is forced: seed_widget's order holds."""
    mark = f"{key}#for"
    before = st.session_state.get(mark)
    st.session_state[mark] = token
    if before is not None and before != token:
        st.session_state[key] = value
