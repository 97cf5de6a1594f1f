"""`reftune demo --quick` end to end, and its HTML report rendered in headless Chromium."""
import json
import os
import shutil
import subprocess

import pytest
import torch

from reftune.cli import main

pytestmark = pytest.mark.costly(120)  # about this many seconds in all: costly files start first


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """A private cache for the quick base model, built once for this module's demo runs."""
    return tmp_path_factory.mktemp("demo-cache")


def run_demo(cache, folder, *options: str) -> str:
    """Run `reftune demo --quick` with the base model cached in `cache`; returns what it printed."""
    import contextlib
    import io

    saved = os.environ.get("REFTUNE_CACHE")
    os.environ["REFTUNE_CACHE"] = str(cache)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["demo", "--quick", "--output", str(folder), "--no-progress", *options]) == 0
    finally:
        if saved is None:
            os.environ.pop("REFTUNE_CACHE", None)
        else:
            os.environ["REFTUNE_CACHE"] = saved
    return out.getvalue()


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, demo_cache):
    """One quick demo run: its folder and printed output."""
    folder = tmp_path_factory.mktemp("demo") / "run"
    return folder, run_demo(demo_cache, folder)


@pytest.fixture(scope="module")
def all_methods_demo(tmp_path_factory, demo_cache):
    """A quick demo run with every method (Offline-ST, Online-ST, the verifier's reranking), voting on
    the first 16 test questions: its folder and what it printed (stdout and stderr)."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("demo-all") / "run"
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        printed = run_demo(demo_cache, folder, "--all-methods", "--vote-questions", "16")
    return folder, printed + errors.getvalue()


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


@pytest.mark.slow
def test_quick_demo_prints_the_table_and_writes_the_report(quick_demo):
    run, printed = quick_demo
    summary = json.loads((run / "summary.json").read_text())
    page = (run / "report.html").read_text()
    markdown = (run / "report.md").read_text()
    for name in ("warm-up", "SFT", "ReFT"):
        figures = summary["results"][name]
        line = f"| {name} | {percent(figures['top1'])} | {percent(figures['vote'])} | {percent(figures['dev'])} |"
        assert line in printed and line in markdown
        assert f"<td>{name}</td><td>{percent(figures['top1'])}</td>" in page
    assert "Report: " in printed and summary["verdict"] in printed
    low, high = summary["gap_interval"]
    assert low <= summary["gap_top1"] <= high and summary["certainty"] in ("a clear gain", "a clear loss", "within noise")
    assert "95% interval" in summary["verdict"] and summary["certainty"] in summary["verdict"]
    assert summary["verdict"] in markdown and summary["verdict"] in page.replace("&#x27;", "'")
    record = json.loads((run / "run.json").read_text())
    kernels = record["cpu_linear"]
    assert record["cpu_threads"] == torch.get_num_threads()
    assert kernels == summary["cpu_linear"] and f"CPU linear layers: {kernels}" in printed.splitlines()[1]
    plots = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert {"dev_accuracy.png", "train_reward.png", "kl.png", "value_loss.png", "sft_loss.png"} <= set(plots)
    assert page.count("data:image/png;base64,") == len(plots)
    assert (run / "config.yaml").exists()
    for branch in ("warmup", "sft", "reft"):
        assert (run / branch / "metrics.jsonl").exists()
    assert 'class="example' in page
    # the ReFT branch ran beside continued SFT, in a second process whose console is reft.log
    reft = json.loads((run / "reft" / "summary.json").read_text())
    assert "reftune rl: " in (run / "reft.log").read_text() and f"ReFT branch: best dev accuracy " \
        f"{percent(reft['best_dev_accuracy'])} at step {reft['best_step']}" in printed
    branches = [json.loads((run / branch / "run.json").read_text())["cpu_threads"] for branch in ("reft", "sft")]
    assert branches == [max(1, record["cpu_threads"] // 2)] * 2


@pytest.mark.slow
def test_both_branches_start_from_the_warm_ups_last_epoch(quick_demo):
    import yaml

    from reftune.training.checkpoint import latest_checkpoint
    from reftune.training.tracking import read_metrics

    run, _ = quick_demo
    last = latest_checkpoint(run / "warmup")
    warmup_steps = json.loads((run / "warmup" / "summary.json").read_text())["steps"]
    assert last.name == f"step-{warmup_steps:06d}"
    for branch in ("sft", "reft"):
        assert yaml.safe_load((run / branch / "config.yaml").read_text())["model"] == str(last / "model")
    results = json.loads((run / "summary.json").read_text())["results"]
    logged = [m["dev_accuracy"] for m in read_metrics(run / "warmup") if "dev_accuracy" in m]
    assert results["warm-up"]["dev"] == logged[-1]
    for name, branch in (("SFT", "sft"), ("ReFT", "reft")):  # each keeps its start unless it beat it on dev
        own = json.loads((run / branch / "summary.json").read_text())
        beat = own["best_dev_accuracy"] > logged[-1]
        assert results[name]["chosen"] == (f"step {own['best_step']}" if beat else "its start (the warm-up)")
        assert results[name]["dev"] == max(own["best_dev_accuracy"], logged[-1])
    assert "the warm-up's at its last epoch" in (run / "report.md").read_text()


@pytest.mark.slow
def test_the_reft_branch_warms_up_its_value_head_first(quick_demo):
    """The quick plan's share of critic warm-up steps (2 of 8), then PPO; refused when it leaves no
    policy step."""
    from reftune.config import DemoConfig
    from reftune.errors import ReftuneError
    from reftune.training.tracking import read_metrics

    run, _ = quick_demo
    flags = [m["critic_warmup"] for m in read_metrics(run / "reft") if "critic_warmup" in m]
    assert flags == [1, 1] + [0] * 6
    with pytest.raises(ReftuneError, match="critic_warmup_steps must be >= 0 and below rl_steps"):
        DemoConfig(rl_steps=5, critic_warmup_steps=5)


@pytest.mark.slow
def test_the_reft_branch_samples_with_the_demos_temperature_and_lambda(quick_demo):
    """The ReFT branch runs with the demo's own choices (documented as departures from the paper),
    both RL losses aggregated as the authors' code does; the warm-up is evaluated on dev once, at the
    last epoch where the branches start, and every evaluation reads the dev split in batches of 256."""
    import yaml

    from reftune.config import DemoConfig
    from reftune.training.tracking import read_metrics

    run, _ = quick_demo
    reft = yaml.safe_load((run / "reft" / "config.yaml").read_text())
    defaults = DemoConfig()
    assert (reft["temperature"], reft["lam"]) == (defaults.rl_temperature, defaults.lam) == (0.5, 1.0)
    assert reft["loss_aggregation"] == reft["value_loss_aggregation"] == "seq_mean_token_mean"
    assert [m["step"] for m in read_metrics(run / "warmup") if "dev_accuracy" in m] == \
        [json.loads((run / "warmup" / "summary.json").read_text())["steps"]]
    for branch in ("warmup", "sft", "reft"):
        assert yaml.safe_load((run / branch / "config.yaml").read_text())["eval_batch_size"] == 256
    assert (defaults.dev_questions, defaults.test_questions, defaults.vote_questions) == (500, 1000, 200)


@pytest.mark.slow
def test_a_second_run_with_the_same_seed_gives_the_same_figures_quietly(quick_demo, all_methods_demo):
    """Budgets in work, not seconds: the same seed repeats the demo bit for bit on this machine (the
    all-methods run repeats the warm-up and both branches of the plain run, then adds its own); the
    console holds one line per stage and the table, and no warning."""
    first_run, first_printed = quick_demo
    second_run, second_printed = all_methods_demo
    first = json.loads((first_run / "summary.json").read_text())["results"]
    second = json.loads((second_run / "summary.json").read_text())["results"]
    for name in ("warm-up", "SFT", "ReFT"):  # the vote differs: the second votes on 16 questions, not 32
        assert (first[name]["top1"], first[name]["dev"], first[name]["chosen"]) == \
            (second[name]["top1"], second[name]["dev"], second[name]["chosen"]), name
    for branch in ("warmup", "sft", "reft"):
        assert logged_figures(first_run / branch) == logged_figures(second_run / branch), branch
    assert len(first_printed.splitlines()) <= 40, first_printed
    assert "warn" not in (first_printed + second_printed).lower()


def logged_figures(run) -> list[dict]:
    """What a run logged, less what the clock measured (time, time_*, *_per_s)."""
    from reftune.training.tracking import read_metrics

    clock = lambda key: key == "time" or key.startswith("time_") or key.endswith("_per_s")  # noqa: E731
    return [{key: value for key, value in row.items() if not clock(key)} for row in read_metrics(run)]


def test_the_branches_get_the_compute_of_the_rl_steps():
    from reftune.config import DemoConfig
    from reftune.stages.demo import Budgets, budgets, make_plan

    config = DemoConfig()
    # An RL step: 16 questions x 4 samples, each sampled (1 pass), scored by the reference (1) and
    # trained on for 2 epochs (3 each): 512 rows. An SFT step: 16 rows x 3. An Online-ST step: 64
    # samples x 4 + 16 golds x 3 = 304.
    assert budgets(config, make_plan(config)) == Budgets(rl=60, sft=640, online_st=101, sft_eval_every=100)
    doubled = DemoConfig(rl_steps=120)
    assert budgets(doubled, make_plan(doubled)).sft == 1280


def test_a_branch_keeps_its_start_unless_a_checkpoint_beats_it_on_dev(tmp_path):
    from reftune.stages.demo import Pick, pick

    start = Pick("warmup/checkpoints/step-000300/model", 0.20, "its start (the warm-up)")

    def run(best_dev: float):
        folder = tmp_path / f"run-{best_dev}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(
            {"best_dev_accuracy": best_dev, "best_model": str(folder / "best"), "best_step": 50}))
        return folder

    assert pick(run(0.165), start) == start
    assert pick(run(0.20), start) == start  # a tie keeps the start
    assert pick(run(0.25), start) == Pick(str(tmp_path / "run-0.25" / "best"), 0.25, "step 50")
    assert pick(run(0.10)) == Pick(str(tmp_path / "run-0.1" / "best"), 0.10, "step 50")  # no start: its own best


@pytest.mark.slow
def test_quick_demo_with_all_methods_prints_the_four_method_table_with_rerank(all_methods_demo):
    """Voting and reranking on the first 16 of the 32 test questions (--vote-questions), top-1 on all."""
    import yaml

    run, printed = all_methods_demo
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["results"]) == ["warm-up", "SFT", "ReFT", "Offline-ST", "Online-ST"]
    assert ("| model | test top-1 | test vote@4 (first 16) | test rerank@4 (first 16) | dev top-1 | right, wrong steps |"
            in printed)
    for evaluation, questions in (("sampled", 16), ("greedy", 32)):
        assert yaml.safe_load((run / "eval" / f"warm-up-{evaluation}" / "config.yaml").read_text())["limit"] == questions
    for name, figures in summary["results"].items():
        line = (f"| {name} | {percent(figures['top1'])} | {percent(figures['vote'])} | {percent(figures['rerank'])} "
                f"| {percent(figures['dev'])} |")
        assert line in printed and line in (run / "report.md").read_text()
    assert (run / "offline-st" / "samples.jsonl").exists() and (run / "verifier" / "best" / "verifier_head.safetensors").exists()
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(list((run / "plots").glob("*.png")))
    assert (run / "plots" / "methods.png").exists() and "Offline-ST" in page


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (.ci/run does: apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return [found, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_report_renders_in_chromium_with_table_and_plots(quick_demo, tmp_path):
    import matplotlib.image

    run, _ = quick_demo
    browser = chromium()
    url = (run / "report.html").resolve().as_uri()
    dom = subprocess.run([*browser, f"--user-data-dir={tmp_path / 'a'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    plots = len(list((run / "plots").glob("*.png")))
    assert f'data-images-loaded="{plots}"' in dom, "not every plot decoded in the browser"
    ours = json.loads((run / "summary.json").read_text())["results"]["ReFT"]
    assert f"<td>ReFT</td><td>{percent(ours['top1'])}</td>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*browser, f"--user-data-dir={tmp_path / 'b'}", "--window-size=1200,1400",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    pixels = matplotlib.image.imread(shot)[..., :3]
    not_white = (pixels < 0.9).any(axis=-1).mean()
    # matplotlib's first line colour (#1f77b4) drawn in the plots, and the table's header tint (#eef)
    plot_blue = ((abs(pixels - [0.12, 0.47, 0.71]) < 0.08).all(axis=-1)).sum()
    header_tint = ((abs(pixels - [0.933, 0.933, 1.0]) < 0.02).all(axis=-1)).sum()
    assert not_white > 0.02 and plot_blue > 100 and header_tint > 100, (not_white, plot_blue, header_tint)
