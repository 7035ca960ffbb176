"""The run format now lives in `dynamics.runs.store`; this name is kept so `dynamics.store.read_metrics` and
`from dynamics import store` keep working. It is the same module object, not a copy."""
import sys

from .runs import store as _store

sys.modules[__name__] = _store
