"""The layout's rules: the math, the reward, selection, the tasks and verification import without
transformers; the stages sit in layers (helpers at the bottom, then one module per stage that imports no
other stage; only the pipelines that run stages, demo and compare, sit above them); no import circle
anywhere in the package."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reftune"
STAGE_HELPERS = {"common", "batches", "samples", "run", "ppo", "__init__"}
PIPELINES = {"demo", "compare"}  # run other stages, one floor up


def test_core_modules_import_without_transformers():
    code = ("import sys, reftune.algorithms.advantages, reftune.algorithms.losses, reftune.algorithms.diagnostics, "
            "reftune.scoring.selection, reftune.scoring.rewards, reftune.tasks, reftune.execution, reftune.scoring.verification; "
            "print(sorted(m for m in ('transformers', 'accelerate', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at module level or inside functions)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        edges[name] = {target for target in found if target in modules and target != name}
    return edges


def test_no_stage_imports_another_stage():
    def stage(module: str) -> str | None:
        return module.rsplit(".", 1)[1] if module.startswith("reftune.stages.") else None

    crossing = sorted(f"{source} -> {target}" for source, targets in imports().items() for target in targets
                      if stage(source) and stage(target) and stage(target) not in STAGE_HELPERS
                      and stage(source) not in PIPELINES)
    assert crossing == []


def test_stage_helpers_import_no_stage():
    helpers = {f"reftune.stages.{name}" for name in STAGE_HELPERS}
    upward = sorted(f"{source} -> {target}" for source, targets in imports().items() if source in helpers
                    for target in targets if target.startswith("reftune.stages.") and target not in helpers)
    assert upward == []


def test_no_import_circles():
    edges, state, circles = imports(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    # a package's __init__ importing its own submodules is not a circle of behaviour
    circles = [c for c in circles if not all(m.startswith(c[0]) or c[0].startswith(m) for m in c)]
    assert circles == []
