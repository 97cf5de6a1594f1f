"""The configs of the paper's baselines (Offline-ST, Online-ST), the reranking verifier and the
comparison table."""
from __future__ import annotations

from dataclasses import dataclass

from reftune.errors import ReftuneError
from reftune.config.groups import (ModelOptions, OnPolicyOptions, RunOptions, TaskOptions, TrainingSamplesOptions,
                                   check_common, require_at_least_one)
from reftune.config.stages import SFTConfig


@dataclass(kw_only=True)
class OnlineSTConfig(OnPolicyOptions, TaskOptions, ModelOptions, RunOptions):
    """Online self-training: from the warm-up model, each step samples CoTs and trains on the correct
    ones and on the batch's gold CoTs; no reference model, no KL."""

    sample_weight: float = 0.5
    """Loss = w * NLL(correct samples) + (1 - w) * NLL(gold CoTs of the batch) (the paper: 0.5)."""
    max_length: int = 700
    """Longest prompt + CoT in tokens trained on; longer ones are skipped."""

    def __post_init__(self):
        self.check_on_policy()
        if not 0 <= self.sample_weight <= 1:
            raise ReftuneError(f"sample_weight must be in [0, 1], got {self.sample_weight}")


@dataclass(kw_only=True)
class OfflineSTConfig(TrainingSamplesOptions, SFTConfig):
    """Offline self-training: sample CoTs from the warm-up model, keep the correct ones (deduplicated,
    up to keep_per_question) with the gold CoT, and SFT the base model on them."""

    keep_per_question: int = 10
    """Correct, distinct sampled CoTs kept per question, besides the gold one (the paper: 10)."""

    def __post_init__(self):
        super().__post_init__()
        self.check_samples()
        require_at_least_one(self, "keep_per_question")


@dataclass(kw_only=True)
class VerifierConfig(TrainingSamplesOptions, SFTConfig):
    """A reward model for reranking: a correctness classifier (a scalar head on the backbone of
    --model, an SFT or ReFT checkpoint) trained on sampled CoTs labelled by the reward."""

    learning_rate: float = 1e-6
    """Peak AdamW lr (the paper: 1e-6)."""
    epochs: int = 3
    """Passes over the labelled samples (the paper: 3)."""
    dev_samples_per_question: int = 10
    """CoTs sampled per dev question (by --sampler) to measure the verifier's AUC and pick its best
    checkpoint."""
    dev_samples: str | None = None
    """A JSONL of CoTs already sampled for the dev split, instead of sampling them."""

    def __post_init__(self):
        super().__post_init__()
        self.check_samples()
        if not self.sampler and not self.dev_samples:
            raise ReftuneError("the verifier's dev AUC needs dev samples: name --sampler (or --dev-samples)")
        require_at_least_one(self, "dev_samples_per_question")


@dataclass(kw_only=True)
class CompareConfig(TaskOptions, RunOptions):
    """The paper's table for your runs: each model's test top-1, vote@K and (with a verifier)
    rerank@K, to the console, Markdown and an HTML page with a bar chart."""

    runs: str = ""
    """Comma-separated name=folder pairs, e.g. SFT=runs/sft,ReFT=runs/rl (a run folder's best/
    model, or a model folder itself)."""
    verifier: str | None = None
    """A verifier folder (from `reftune verifier`) for the rerank@K column."""
    split: str = "test"
    """Split the methods are compared on."""
    limit: int | None = None
    """Compare on the first N questions only."""
    num_samples: int = 100
    """K of vote@K and rerank@K (the paper: 100 at temperature 1.0)."""
    temperature: float = 1.0
    """Sampling temperature for voting and reranking."""
    max_new_tokens: int = 300
    """Longest response."""
    batch_size: int = 16
    """Questions per generation batch."""

    def __post_init__(self):
        check_common(self)
        parse_runs(self.runs)
        require_at_least_one(self, "num_samples", "max_new_tokens", "batch_size")
        if self.temperature <= 0:
            raise ReftuneError("temperature must be > 0 for vote@K and rerank@K")


def parse_runs(text: str) -> dict[str, str]:
    """"SFT=runs/a,ReFT=runs/b" -> {"SFT": "runs/a", "ReFT": "runs/b"}.

    >>> parse_runs("SFT=runs/a, ReFT=runs/b")
    {'SFT': 'runs/a', 'ReFT': 'runs/b'}
    """
    runs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ReftuneError(f"--runs: {item!r} is not name=folder (e.g. SFT=runs/sft,ReFT=runs/rl)")
        if name.strip() in runs:
            raise ReftuneError(f"--runs names {name.strip()!r} twice")
        runs[name.strip()] = folder.strip()
    if not runs:
        raise ReftuneError("--runs is empty: give name=folder pairs, e.g. SFT=runs/sft,ReFT=runs/rl")
    return runs
