"""The sidebar's page list, drawn by the dashboard itself so the home page is called "Home" (Streamlit's
pages-folder mode would label it after the file, "app"; .streamlit/config.toml turns that list off with
client.showSidebarNavigation = false). Every page draws it first, through dashboard.runs.folders (the Upload
page calls it directly).
"""
from __future__ import annotations

import streamlit as st

from dashboard.settings import REPO

PAGES = (("app.py", "Home", ":material/home:"), ("pages/0_Claims.py", "Claims", ":material/scatter_plot:"),
         ("pages/1_Runs.py", "Runs", ":material/table_chart:"),
         ("pages/2_Trajectories.py", "Trajectories", ":material/ssid_chart:"),
         ("pages/3_Limit.py", "Limit", ":material/compare:"), ("pages/4_Coupling.py", "Coupling", ":material/link:"),
         ("pages/5_Scaling.py", "Scaling", ":material/trending_down:"), ("pages/6_Upload.py", "Upload", ":material/upload:"),
         ("pages/7_Coord_check.py", "Coord check", ":material/straighten:"))


def nav() -> None:
    """One sidebar link per page that exists, then a divider."""
    for page, label, icon in PAGES:
        if (REPO / page).exists():
            st.sidebar.page_link(page, label=label, icon=icon)
    st.sidebar.divider()
