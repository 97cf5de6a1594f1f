"""benchmarks/demo_gap.py: the spread it reports, which finished runs it reuses, and the machine it
records (the runs themselves are the demo, tested in tests/stages/test_demo.py)."""
import importlib.util
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("demo_gap", ROOT / "benchmarks" / "demo_gap.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_spread_is_the_mean_the_population_std_and_the_minimum_of_each_figure():
    gap = load_script()
    runs = [{"warmup": 20.0, "sft": 30.0, "reft": 42.0, "gap": 12.0},
            {"warmup": 22.0, "sft": 32.0, "reft": 36.0, "gap": 4.0}]
    assert gap.spread(runs) == {"mean": {"warmup": 21.0, "sft": 31.0, "reft": 39.0, "gap": 8.0},
                                "std": {"warmup": 1.0, "sft": 1.0, "reft": 3.0, "gap": 4.0},
                                "min": {"warmup": 20.0, "sft": 30.0, "reft": 36.0, "gap": 4.0}}


def test_a_run_is_reused_only_when_finished_with_the_same_settings(tmp_path):
    gap = load_script()
    wanted = gap.wanted_config(1, False, ["--rl-steps", "30"])
    assert wanted["seed"] == 1 and wanted["rl_steps"] == 30 and wanted["rl_temperature"] == 0.5
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({**wanted, "output": "elsewhere", "progress": False}))
    assert not gap.finished(folder, wanted)  # no summary: it stopped before the end
    (folder / "summary.json").write_text(json.dumps({"results": {}}))
    assert gap.finished(folder, wanted)
    assert not gap.finished(folder, {**wanted, "lam": 0.95})  # another setting: run it again


def test_the_machine_names_its_cpu_cores_and_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    machine = load_script().machine()
    assert machine["cores"] >= 1 and machine["omp_num_threads"] == "1" and isinstance(machine["cpu"], str)
