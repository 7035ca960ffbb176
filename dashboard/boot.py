"""The first lines of every page: `st.set_page_config`, then a head start for the browser's chart library.

Streamlit's browser side fetches and runs Plotly's code (one 4.7 MB script) only when the first chart arrives,
after the page's Python has run; a fresh browser then spends seconds on it before anything is drawn. `start`
sends, as the page's first elements, an empty Plotly chart (one invisible trace with no points) in a hidden
container: the browser starts loading Plotly at once, with Streamlit's own chart element, while the server
imports the page's modules and reads its data. (An earlier version imported the script from an `st.html`
element; that waited for the Html element's own code first, and a first chart came ≈0.1–0.3 s later.) Tests
and benchmarks that look for the page's charts leave this one out: `BOOT_KEY`, the class `st-key-<BOOT_KEY>`.
This module imports nothing of ours, so that it runs before the page's other imports; pages call it first.
"""
from __future__ import annotations

import streamlit as st

BOOT_KEY = "boot-plotly"
_EMPTY = {"data": [{"type": "scatter", "x": [], "y": [], "visible": False}], "layout": {"height": 10}}


def start(title: str, icon: str = ":material/monitoring:") -> None:
    """`st.set_page_config(page_title=title, page_icon=icon, layout="wide")`, then the hidden empty chart."""
    st.set_page_config(page_title=title, page_icon=icon, layout="wide")
    st.markdown(f'<style data-boot>.st-key-{BOOT_KEY}, [data-testid="stElementContainer"]:has(style[data-boot]) '
                '{display: none}</style>', unsafe_allow_html=True)  # no gap above the page's title
    st.plotly_chart(_EMPTY, key=BOOT_KEY)
