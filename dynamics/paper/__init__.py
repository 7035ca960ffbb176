"""The paper's experiments: `experiments` (coupling sweeps and reused-vs-decoupled twins, with fitted
slopes and verdicts), `reproduce` (every claim of arXiv 2512.21075 that this tool measures, written to
claims.json) built from `vs_limit` (finite nets against the limit engine) and `sweeps` (coupling, twins,
two-layer blocks, learning rates), `gia` (the twins and the limit engine's gap), `verdicts` (a claim from a
points file), `kinds` (what each kind of statement asks of the data: rate, bound, persists, vanishes, contrast),
`statements` (the paper's statement each claim encodes), `identify` (is a joint fit identified; its profile
interval), `rejudge` (the verdicts again from a bundle's stored points), `stats` (paired seed bootstrap, the
verdict rule, the log-η optimum, the joint finite-size fit) and `fits` (log-log fits with bootstrap intervals,
profile errors). docs/theory.md explains each claim.
"""
