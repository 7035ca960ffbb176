"""The paper's experiments: `experiments` (coupling sweeps and reused-vs-decoupled twins, with fitted
slopes and verdicts), `reproduce` (every claim of arXiv 2512.21075 that this tool measures, written to
claims.json) and `fits` (log-log fits with bootstrap intervals, profile errors) that both use.
"""
