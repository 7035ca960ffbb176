"""The Streamlit side shared by every page: run folders, cached loaders and the run picker (`runs`), and
URL query-string state (`state`). The `dynamics` library never imports this package or Streamlit.
"""
