"""The core rule of the layout: the math, the reward, selection and the tasks import without
transformers (torch at most), so they stay light and their tests plain."""
import subprocess
import sys


def test_core_modules_import_without_transformers():
    code = ("import sys, reftune.algorithms.advantages, reftune.algorithms.losses, reftune.selection, "
            "reftune.rewards, reftune.tasks, reftune.execution; "
            "print(sorted(m for m in ('transformers', 'accelerate', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
