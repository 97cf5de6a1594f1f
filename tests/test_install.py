"""One install runs every command: every package reftune's code imports comes with the default
install (`pip install reftune`, no extras), directly or through what those packages need."""
import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def guarded(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a `try:` whose handler catches ImportError: optional packages
    (wandb, say) that a user who asks for them is told to install, in one line."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers):
            inside |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return inside


def imported_top_modules() -> set[str]:
    """Top-level names of every module imported anywhere in reftune/ (function-level imports too),
    but for optional ones (see `guarded`)."""
    names = set()
    for path in (ROOT / "reftune").rglob("*.py"):
        tree = ast.parse(path.read_text())
        optional = guarded(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"reftune", "__future__"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def default_install() -> set[str]:
    """The distributions `pip install reftune` brings: the default dependencies and, recursively, what
    each requires without an extra."""
    wanted = [requirement_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        wanted += [requirement_name(r) for r in requires if "extra ==" not in r.replace("extra==", "extra ==")]
    return seen


def test_every_imported_package_comes_with_the_default_install():
    providers = {module: {d.lower().replace("_", "-") for d in dists}
                 for module, dists in metadata.packages_distributions().items()}
    installed = default_install()
    missing = {module: sorted(providers.get(module, {"?"})) for module in imported_top_modules()
               if not providers.get(module, set()) & installed}
    assert not missing, f"imported by reftune but not in the default install: {missing}"


def test_the_web_commands_packages_are_default_dependencies():
    dependencies = {requirement_name(r) for r in
                    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert {"starlette", "uvicorn", "jinja2", "python-multipart", "pygments"} <= dependencies
