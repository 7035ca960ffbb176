"""The first lines of every page: `st.set_page_config`, then a head start for the browser's chart library.

Streamlit's browser side fetches Plotly's code (one 4.7 MB script) only when the first chart arrives, after the
page's Python has run; a fresh browser then spends seconds downloading and compiling it before anything is drawn.
`start(title)` asks the browser to fetch and compile that script at once (a one-line module import in an
invisible `st.html` element), so it loads while the server imports the page's modules and reads its data. This
module imports nothing but Streamlit so that it runs before those imports; pages call it first.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import streamlit as st


@lru_cache(maxsize=1)
def plotly_script() -> str | None:
    """The file name of Streamlit's Plotly chunk (static/js/PlotlyChart.<hash>.js), or None if this Streamlit
    version has none (then there is nothing to start early)."""
    found = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))
    return found[0].name if len(found) == 1 else None


def start(title: str, icon: str = ":material/monitoring:") -> None:
    """`st.set_page_config(page_title=title, page_icon=icon, layout="wide")`, then the early fetch of Plotly's code."""
    st.set_page_config(page_title=title, page_icon=icon, layout="wide")
    name = plotly_script()
    if not name:
        return
    try:  # a relative URL, so it also works under server.baseUrlPath; a failure only loses the head start
        st.html('<style>[data-testid="stElementContainer"]:has(script[data-boot]) {display: none}</style>'
                f'<script type="module" data-boot>import("./static/js/{name}").catch(() => {{}});</script>',
                unsafe_allow_javascript=True)  # the style hides the element's empty row (no gap above the title)
    except TypeError:  # a Streamlit older than st.html's unsafe_allow_javascript: no head start, nothing else lost
        pass
