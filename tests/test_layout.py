"""The package layout's promises: public names survive the move into wings."""
import importlib


def test_public_names_survive_the_move():
    import dynamics
    import dynamics.store
    from dynamics import store
    from dynamics.runs import store as runs_store
    assert store is runs_store and dynamics.store is runs_store  # one module, so monkeypatching still works
    assert dynamics.store.read_metrics is runs_store.read_metrics
    assert dynamics.record is importlib.import_module("dynamics.runs.recorder").record
    assert dynamics.catalog is importlib.import_module("dynamics.sweep.catalog").catalog
    from dynamics.sweep import plan_sweep, run_sweep  # noqa: F401  (the README's import)
    assert callable(plan_sweep)
