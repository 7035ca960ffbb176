"""The package layout's promises: public names survive the moves between modules, and both import graphs
(`dashboard/`, `dynamics/`) run one way only.

The graphs are read with `ast` from the source, so they hold every intra-package import: module-level ones,
imports inside functions (the lazy ones that keep torch out of `--help`) and those under `if TYPE_CHECKING:`,
absolute (`dynamics.x`) and relative (`from .. import x`). An import of a name that is a module (`from ..
import probes`) is an arrow to that module; any other name is an arrow to the module that defines it (a
package's name is its `__init__.py`). The implicit import of parent packages is not an arrow. `importlib`
calls (the PEP 562 lazy names of `dynamics/__init__.py` and `dynamics/limit/__init__.py`) are not followed.

dashboard/: no cycle, and `dashboard.settings` at the bottom importing no other dashboard module.

dynamics/ (DESIGN.md: a small core with wings in folders):
- the **core** is the top-level modules `dynamics/*.py` (config, activations, model, data, train, probes,
  metrics, the coupling tracker and its reference, background, cli, the `store` shim, the package itself),
  except `__main__.py`, the command line's router, which stands above the wings (it registers each wing's
  subcommand);
- the **wings** are the sub-packages: `limit` (the limit engine), `runs` (the run format, importers, the
  recorder), `sweep` (grids of runs, the catalogue), `paper` (the paper's experiments, fits, reproduce),
  `coordcheck` (the coordinate check) and `figures` (figure builders): every folder with an `__init__.py`;
- the rules: no import cycle between modules; no cycle between wings (the graph collapsed to one node per
  wing); and no core module imports a wing, with one exception: `dynamics.runs.store`, the run format, a
  contract every layer writes and reads (DESIGN.md lists it in the core; it lives beside the importers, and
  `dynamics.store` is its core name). That exception imports nothing of `dynamics`, so it pulls no wing in.
  Wings use the core freely.
"""
import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE_MAY_IMPORT = {"dynamics.runs.store"}  # the run format: see the module docstring
ABOVE_THE_WINGS = {"dynamics.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports anywhere in its source (see the module docstring)."""
    paths = {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # the package `.` refers to
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here.split(".")[:len(here.split(".")) - node.level + 1])
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                if target.split(".")[0] != package:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in paths else target)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == package}
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path + [node, dep]
            if dep not in state and (found := visit(dep, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found[found.index(found[-1]):]
    return None


def _wing(module: str) -> str | None:
    """The wing a dynamics module belongs to (its sub-package), or None for the core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (REPO / "dynamics" / parts[1] / "__init__.py").exists() else None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert _circles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["a", "b", "a"], ["c", "d", "c"]]


def test_dynamics_graph_sees_every_kind_of_import():
    graph = _imports("dynamics")
    assert "dynamics.activations" in graph["dynamics.model"]       # relative, module level
    assert "dynamics.train" in graph["dynamics.limit.nfd"]         # inside a function
    assert "dynamics.probes" in graph["dynamics.limit.records"]    # `from .. import probes`
    assert "dynamics.limit" in graph["dynamics.limit.run"]         # a name of the package's __init__
    assert "dynamics.activations" in graph["dynamics.limit.kernels"]  # absolute


def test_dashboard_imports_have_no_cycle():
    graph = _imports("dashboard")
    assert graph["dashboard.settings"] == set(), "settings must import no other dashboard module"
    assert (cycle := _cycle(graph)) is None, f"import cycle: {' -> '.join(cycle)}"


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (so a failure names every circle)."""
    found, graph = [], {k: set(v) for k, v in graph.items()}
    while cycle := _cycle(graph):
        found.append(cycle)
        graph[cycle[-2]].discard(cycle[-1])  # open this circle at one arrow and look for the next
    return found


def test_dynamics_imports_have_no_cycle():
    circles = _circles(_imports("dynamics"))
    assert not circles, "import cycles: " + "; ".join(" -> ".join(c) for c in circles)


def test_dynamics_wings_import_each_other_one_way():
    wings: dict[str, set[str]] = {}
    for module, deps in _imports("dynamics").items():
        if (wing := _wing(module)) is not None:
            wings.setdefault(wing, set()).update(w for d in deps if (w := _wing(d)) not in (None, wing))
    assert (cycle := _cycle(wings)) is None, f"wings import each other in a circle: {' -> '.join(cycle)}"


def test_core_imports_no_wing():
    graph = _imports("dynamics")
    assert graph["dynamics.runs.store"] == set(), "the run format must stay a leaf: the core may import it"
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if _wing(m) is None and m not in ABOVE_THE_WINGS
                 for d in deps if _wing(d) is not None and d not in CORE_MAY_IMPORT)
    assert not bad, "core modules import a wing: " + "; ".join(bad)


def test_public_names_survive_the_move():
    import dynamics
    import dynamics.store
    from dynamics import store
    from dynamics.runs import store as runs_store
    assert store is runs_store and dynamics.store is runs_store  # one module, so monkeypatching still works
    assert dynamics.store.read_metrics is runs_store.read_metrics
    assert dynamics.record is importlib.import_module("dynamics.runs.recorder").record
    assert dynamics.catalog is importlib.import_module("dynamics.sweep.catalog").catalog
    from dynamics.sweep import plan_sweep, run_sweep  # noqa: F401  (docs/sweeps.md's import)
    assert callable(plan_sweep)


def test_activation_lives_in_the_core_and_keeps_its_old_names():
    """φ and φ' moved from dynamics.limit.kernels to dynamics.activations; every old import still works."""
    import dynamics.limit
    from dynamics import activations, model, probes
    from dynamics.limit import kernels, nfd, records
    for where in (kernels, dynamics.limit, model, probes):
        assert where.phi is activations.phi
    assert kernels.phi_prime is dynamics.limit.phi_prime is activations.phi_prime
    assert nfd.LimitResult is records.LimitResult is dynamics.limit.LimitResult  # moved beside Records
    run = importlib.import_module("dynamics.limit.run")
    assert run.like_config is dynamics.limit.like_config
