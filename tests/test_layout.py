"""The package is laid out by stage, and a stage imports only from stages above it and from core."""

import ast
from pathlib import Path

import syncr2

PKG = Path(syncr2.__file__).parent
ORDER = ["core", "simulation", "synchrony", "social", "analysis", "report"]


def _imports(path: Path) -> set[str]:
    """The syncr2 subpackages a module imports (absolute or relative), at any depth in the file."""
    rel = path.relative_to(PKG).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[: len(rel) - node.level])
                parts = base + (node.module.split(".") if node.module else [])
                if not node.module:
                    parts += [a.name for a in node.names]
            elif node.module and node.module.startswith("syncr2"):
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                found.add(parts[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("syncr2."):
                    found.add(a.name.split(".")[1])
    return found


def test_every_stage_is_a_subpackage():
    present = [s for s in ORDER if (PKG / s).is_dir()]
    for stage in present:
        assert (PKG / stage / "__init__.py").is_file(), stage
    assert {"core", "simulation", "synchrony", "report"} <= set(present)
    flat = sorted(p.name for p in PKG.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "cli.py", "workflow_plan.py"], flat


def test_stages_import_only_upward():
    violations = []
    for stage_no, stage in enumerate(ORDER):
        allowed = set(ORDER[:stage_no + 1]) | {"__init__"}
        for path in (PKG / stage).rglob("*.py"):
            for target in _imports(path):
                if target in ORDER and target not in allowed:
                    violations.append(f"{path.relative_to(PKG)} imports {target}")
                assert target not in ("cli", "workflow_plan"), f"{path} imports {target}"
    assert not violations, violations


def test_no_import_cycle_between_modules():
    """Module-level import graph (top-level statements only) has no cycle."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        mod = ".".join(path.relative_to(PKG).with_suffix("").parts)
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                base = mod.split(".")[: len(mod.split(".")) - node.level]
                deps.add(".".join(base + node.module.split(".")))
        graph[mod] = deps
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, d]))
            if d in graph and not state.get(d):
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if not state.get(m):
            visit(m, [])


def test_tasks_and_prompts_do_not_import_each_other():
    tasks = (PKG / "simulation" / "tasks.py").read_text()
    prompts = (PKG / "simulation" / "prompts.py").read_text()
    assert "from .prompts import" in tasks
    assert "from .tasks import" not in prompts


def test_the_r2_step_loads_no_analysis_module():
    """The main R2 step (``syncr2 r2``) runs on the synchrony stage alone: one ridge-map engine there."""
    import subprocess
    import sys

    code = ("import sys, syncr2.cli, syncr2.synchrony.r2_variants, syncr2.synchrony.permuted_grids, "
            "syncr2.synchrony.subset_grids, syncr2.synchrony.mlp_maps; "
            "print(sorted(m for m in sys.modules if m.startswith('syncr2.analysis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
