"""The review app's layers: training code never imports it, and what it knows is plain Python."""
import subprocess
import sys

import pytest


def loaded_after(imports: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys, {imports}; print(sorted(m for m in sys.modules if m.startswith({names!r})))"
    return eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


@pytest.mark.slow
def test_training_code_never_imports_the_review_app():
    stages = "reftune.cli, reftune.stages.sft, reftune.stages.rl, reftune.stages.evaluate, reftune.stages.demo"
    assert loaded_after(stages, ("reftune.review", "starlette", "uvicorn", "jinja2")) == []


def test_what_the_app_knows_imports_without_the_web_stack_or_transformers():
    plain = ("reftune.review.records, reftune.review.journal, reftune.review.query, reftune.review.stats, "
             "reftune.review.charts, reftune.review.export, reftune.review.session, reftune.review.team, "
             "reftune.review.agreement, reftune.review.suggest, reftune.review.doubt")
    assert loaded_after(plain, ("starlette", "uvicorn", "jinja2", "transformers")) == []
