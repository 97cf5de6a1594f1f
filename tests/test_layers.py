"""The package's layers, written once, here: bottom to top, each a list of folders (or top-level modules)
that know nothing of each other. A module imports its own folder and the layers below its own, never
one above or beside it; no import circle anywhere; a stage imports no other stage (only the pipelines
that run stages, demo and compare, sit above them); the math, the tasks, the sandbox, scoring and the
configs import without transformers."""
import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reftune"
LAYERS = [
    ["reftune"],                                           # the lazy public API: imports nothing at load
    ["reftune.errors"],
    ["reftune.hub", "reftune.listening"],
    ["reftune.execution"],
    ["reftune.tasks", "reftune.algorithms"],
    ["reftune.scoring"],
    ["reftune.rewards"],                                   # the documented name of scoring's reward
    ["reftune.config"],
    ["reftune.model"],
    ["reftune.generation"],
    ["reftune.training"],
    ["reftune.stages"],
    ["reftune.annotate", "reftune.serve"],                 # the data side, which no training code imports
    ["reftune.review"],
    ["reftune.cli"],
]
STAGE_HELPERS = {"__init__", "report"}  # what only the stages use
PIPELINES = {"demo", "compare"}  # run other stages, one floor up


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


def part_of(module: str) -> str:
    """The entry of LAYERS a module belongs to: the longest one that names it or a folder above it."""
    parts = [part for layer in LAYERS for part in layer if module == part or module.startswith(part + ".")]
    return max(parts, key=len)


def test_every_module_lies_in_a_layer():
    floor = {part for layer in LAYERS for part in layer}
    assert sorted(module for module in imports() if part_of(module) == "reftune" and module != "reftune") == []
    assert len(floor) == sum(map(len, LAYERS))


def test_nothing_imports_upward_or_sideways():
    floor = {part: level for level, layer in enumerate(LAYERS) for part in layer}
    wrong = sorted(f"{source} -> {target}" for source, targets in imports().items() for target in targets
                   if part_of(source) != part_of(target) and floor[part_of(target)] >= floor[part_of(source)])
    assert wrong == []


def test_no_stage_imports_another_stage():
    def stage(module: str) -> str | None:
        name = module.rsplit(".", 1)[-1]
        return name if module.startswith("reftune.stages.") and name not in STAGE_HELPERS else None

    crossing = sorted(f"{source} -> {target}" for source, targets in imports().items() for target in targets
                      if stage(source) and stage(target) and stage(source) not in PIPELINES)
    helpers_up = sorted(f"{source} -> {target}" for source, targets in imports().items() for target in targets
                        if source.startswith("reftune.stages.") and not stage(source) and stage(target))
    assert crossing == [] and helpers_up == []


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


def test_the_light_layers_import_without_transformers():
    code = ("import sys, reftune.algorithms.advantages, reftune.algorithms.losses, reftune.algorithms.diagnostics, "
            "reftune.scoring.selection, reftune.scoring.rewards, reftune.scoring.verification, reftune.rewards, "
            "reftune.tasks, reftune.execution, reftune.config, reftune.config.options; "
            "print(sorted(m for m in ('transformers', 'accelerate', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_architecture_page_draws_these_layers():
    """docs/architecture.md's picture, read from the top floor down, names the folders of LAYERS."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    floors: list[list[str]] = []
    for line in page.split("## The layers", 1)[1].split("```")[1].splitlines():
        if line.startswith("+"):
            floors.append([])
        for cell in line.strip("|").split("|") if line.startswith("|") else []:
            name = (cell.split() or [""])[0]
            if re.fullmatch(r"\w+/|\w+\.py", name):
                module = name.rstrip("/").removesuffix(".py")
                floors[-1].append("reftune" if module == "__init__" else f"reftune.{module}")
    assert [floor for floor in floors if floor][::-1] == LAYERS
