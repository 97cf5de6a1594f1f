"""The README a newcomer reads: its links resolve, its file map matches the tree; and every page
and module speaks to users, not to the project's own work log."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


WORK_LOG = re.compile(r"\b(this|last|previous) stop\b|\bthe stop's\b|\bissues? #?\d+\b", re.IGNORECASE)


def test_docs_code_and_presets_speak_to_users_not_of_the_work_log():
    """Measurement history belongs in dated JSON under benchmarks/results, not in prose."""
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "reftune").rglob("*.py"),
             *(ROOT / "configs").rglob("*.yaml"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "examples").glob("*.ipynb")]
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}" for path in files
             for number, line in enumerate(path.read_text().splitlines(), 1) if WORK_LOG.search(line)]
    assert found == []


def test_every_relative_link_and_image_exists():
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert targets, "no links found: the pattern is wrong"
    assert [target for target in targets if not (ROOT / target).exists()] == []


def test_the_file_map_names_only_what_exists():
    block = README.split("## Files", 1)[1].split("```")[1]
    names = []
    for line in block.splitlines():
        # The names are the leading words of a line, up to the two spaces before its description.
        for name in re.split(r"\s+", line.strip().split("  ")[0]):
            if re.fullmatch(r"[\w./-]+\.py|[\w-]+/", name):
                names.append(name)
    assert len(names) > 20, names
    where = {"reftune/": ROOT, "configs/": ROOT, "examples/": ROOT, "benchmarks/": ROOT, "docs/": ROOT, "tests/": ROOT}
    missing = [name for name in names if not (where.get(name, ROOT / "reftune") / name).exists()]
    assert missing == []
