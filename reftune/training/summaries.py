"""What the stages return: typed summaries. Each run writes the same figures as its summary.json
(`as_json`), which is what the CLI, `demo` and the benchmarks read back from disk."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, kw_only=True)
class TrainingSummary:
    """A training stage's outcome. The best score (dev accuracy, or the verifier's dev AUC) is None
    when the run stopped before its first evaluation."""

    output: str
    """The run folder."""
    steps: int
    best_step: int
    best_model: str
    """The folder of the model that scored best on dev (the run's best/)."""
    stopped: str | None
    """Why the run stopped before its planned end (max_seconds, interrupted), or None."""
    seconds: float
    """Training seconds over all resumes."""

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class SFTSummary(TrainingSummary):
    """SFT, and Offline-ST (which also says what its samples gave in `data`)."""

    best_dev_accuracy: float | None
    train_examples: int
    skipped_too_long: int
    data: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RLSummary(TrainingSummary):
    best_dev_accuracy: float | None


@dataclass(frozen=True, kw_only=True)
class OnlineSTSummary(TrainingSummary):
    best_dev_accuracy: float | None


@dataclass(frozen=True, kw_only=True)
class VerifierSummary(TrainingSummary):
    best_dev_auc: float | None
    balance: dict
    """Distinct samples per split: {"train"|"dev": {"samples", "right", "wrong", "right_fraction"}}."""
    skipped_too_long: int


@dataclass(frozen=True, kw_only=True)
class EvalSummary:
    """Accuracy of a model on a split. Greedy runs give top1_accuracy; sampled runs give vote_accuracy
    (majority vote over samples_per_question samples) and pass_at ({k: pass@k}); with a verifier,
    rerank_accuracy and upper_bound (some sample is right)."""

    model: str
    task: str
    style: str
    split: str
    mode: str
    questions: int
    samples_per_question: int = 0
    mean_reward: float = 0.0
    sample_accuracy: float = 0.0
    no_answer_rate: float = 0.0
    cut_at_max_length: int = 0
    top1_accuracy: float | None = None
    vote_accuracy: float | None = None
    pass_at: dict[int, float] = field(default_factory=dict)
    rerank_accuracy: float | None = None
    upper_bound: float | None = None
    temperature: float = 0.0
    """The sampling temperature (0: greedy); with --temperatures, the one dev chose."""
    dev_votes: dict[str, float] = field(default_factory=dict)
    """With --temperatures: vote@K on the dev split at each candidate temperature."""
    seconds: float = 0.0

    def figures(self) -> dict[str, float]:
        """The accuracy figures under the names people quote: top1_accuracy, vote@K_accuracy, pass@k,
        rerank@K_accuracy, upper_bound@K (those that were measured)."""
        k = self.samples_per_question
        named = {"top1_accuracy": self.top1_accuracy, f"vote@{k}_accuracy": self.vote_accuracy,
                 **{f"pass@{level}": value for level, value in self.pass_at.items()},
                 f"rerank@{k}_accuracy": self.rerank_accuracy, f"upper_bound@{k}": self.upper_bound}
        return {name: value for name, value in named.items() if value is not None}

    def as_json(self) -> dict:
        """summary.json: the run's settings and counts, then figures() under their quoted names."""
        typed = ("top1_accuracy", "vote_accuracy", "pass_at", "rerank_accuracy", "upper_bound", "seconds")
        plain = {name: value for name, value in asdict(self).items() if name not in typed}
        return {**plain, **self.figures(), "seconds": self.seconds}
