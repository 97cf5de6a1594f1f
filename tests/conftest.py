"""Shared fixtures: where the real datasets are (../shared/data beside the checkout)."""
import os
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets its share of the cores (before anything imports torch, whose
# thread pool reads this once): two workers of two threads each on two cores wait on each other's
# threads and run several times slower than one.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

SHARED_DATA = Path(os.environ.get("REFTUNE_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data files; CI must have them (a skip there would hide a broken check)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared data folder at {SHARED_DATA}")
        pytest.skip(f"no shared data at {SHARED_DATA} (set REFTUNE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def arithmetic_texts() -> list[str]:
    """Prompts and targets of a few arithmetic problems: what the tiny tokenizer is fitted to."""
    from reftune.tasks import get_task

    task = get_task("arithmetic", style="nl")
    return [task.prompt(e) + task.target(e) for e in task.load("train")[:200]]


@pytest.fixture()
def tiny_policy(arithmetic_texts):
    """A fresh random-weight tiny model (fp32, CPU) with its in-memory tokenizer."""
    from reftune.model.loading import load_policy

    return load_policy("tiny", tokenizer_texts=arithmetic_texts, seed=0)


@pytest.fixture(scope="session")
def warm_tiny(tmp_path_factory) -> str:
    """A tiny model SFT-ed on 8 arithmetic questions until about 40% of its samples (temperature 1)
    are right: a warm-up model from which RL has signal (~4 s)."""
    from reftune.config import SFTConfig
    from reftune.stages.sft import sft

    output = tmp_path_factory.mktemp("warm-tiny")
    sft(SFTConfig(task="arithmetic", model="tiny", max_train_examples=8, dev_split="train", eval_limit=8,
                  batch_size=8, micro_batch_size=8, epochs=150, eval_every=150, learning_rate=3e-3,
                  warmup_ratio=0.05, eval_max_new_tokens=120, report_to="jsonl", progress=False,
                  output=str(output)))
    return str(output / "best")


@pytest.fixture(scope="session")
def tiny_verifier(tmp_path_factory, warm_tiny) -> str:
    """A verifier initialised from warm_tiny, trained one epoch on its samples for its 8 training
    questions (dev = the same questions: a smoke fixture, not a measurement)."""
    from reftune.config import VerifierConfig
    from reftune.stages.verifier import verifier

    output = tmp_path_factory.mktemp("tiny-verifier")
    verifier(VerifierConfig(task="arithmetic", model=warm_tiny, sampler=warm_tiny, num_samples=4,
                            dev_samples_per_question=4, sample_max_new_tokens=120, max_train_examples=8,
                            dev_split="train", eval_limit=8, batch_size=8, micro_batch_size=8, epochs=2,
                            learning_rate=1e-3, report_to="jsonl", progress=False, output=str(output)))
    return str(output)


def pytest_collection_modifyitems(items):
    """The costliest files first (their `costly` mark), then files with slow tests, then the rest, each
    group in collection order: pytest-xdist hands out whole files in this order, so the long ones start
    early and the short ones fill in around them at the end."""
    def cost(item) -> tuple:
        mark = item.get_closest_marker("costly")
        return (-(mark.args[0] if mark else 0), item.path not in slow_files)

    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=cost)
