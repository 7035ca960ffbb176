"""The package layout's promises: public names survive the move into wings, and the dashboard's modules
import each other one way only (dashboard.settings at the bottom, no cycles)."""
import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dashboard_imports() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((REPO / "dashboard").glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dashboard"):
                if node.module == "dashboard":
                    deps |= {f"dashboard.{a.name}" for a in node.names}
                else:
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("dashboard.")}
        graph[f"dashboard.{path.stem}"] = deps - {f"dashboard.{path.stem}"}
    return graph


def test_dashboard_imports_have_no_cycle():
    graph = _dashboard_imports()
    assert graph["dashboard.settings"] == set(), "settings must import no other dashboard module"
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node, path):
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path + [node, dep])}"
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


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
