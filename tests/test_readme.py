"""The README a newcomer reads: short, its links resolve, its file map matches the tree."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_stays_short():
    assert len(README.splitlines()) <= 160


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
