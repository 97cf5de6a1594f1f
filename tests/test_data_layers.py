"""The data side's layers: verification and annotate stay light; training code never imports the
web, serving or annotation code."""
import subprocess
import sys

import pytest


def imported_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in {names!r} if m in sys.modules))"
    return eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_verification_and_annotate_import_without_torch_or_transformers():
    heavy = ("torch", "transformers", "starlette", "uvicorn")
    statement = "import reftune.scoring.verification, reftune.annotate.run, reftune.annotate.client"
    assert imported_after(statement, heavy) == []


@pytest.mark.slow
def test_training_stages_never_import_annotate_serve_or_review():
    stages = ", ".join(f"reftune.stages.{name}" for name in ("sft", "rl", "evaluate", "online_st",
                                                             "verifier", "demo", "compare"))
    data_side = ("reftune.annotate", "reftune.serve", "reftune.review", "starlette", "uvicorn")
    assert imported_after(f"import {stages}, reftune.training.run, reftune.training.samples", data_side) == []
