"""Why a run is or is not learning, as pure functions over one step's tensors: groups with no
signal, answers cut at the length limit, answers that could not be parsed; and DAPO's dynamic-sampling
filter. B rows; the K = group_size samples of a question sit in adjacent rows."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NO_SIGNAL_SHARE = 0.9
"""A step where more than this share of groups have all-equal rewards learns little: their advantages are 0."""
NO_SIGNAL_STEPS = 10
"""Consecutive such steps before the run says so (fewer would warn about an ordinary unlucky step)."""


def score_groups(scores: Tensor, group_size: int) -> Tensor:
    """(B,) -> (B / group_size, group_size); a clear error when the rows do not fill whole groups."""
    if group_size < 1 or scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    return scores.view(-1, group_size)


def informative_groups(scores: Tensor, group_size: int) -> Tensor:
    """(B,) scores -> (B / group_size,) bool: True where the group's rewards differ, so a baseline
    from the group gives its samples a non-zero advantage. DAPO's dynamic sampling keeps only these
    (Yu et al. 2025; verl algorithm.filter_groups). A group of one sample is never informative."""
    groups = score_groups(scores, group_size)
    return (groups != groups[:, :1]).any(dim=1)


def informative_rows(scores: Tensor, group_size: int, max_groups: int | None = None) -> Tensor:
    """(B,) scores -> (B,) bool: informative_groups repeated over each group's rows, to index the
    rows of a rollout. max_groups: keep only the first that many informative groups (a dynamic-
    sampling round that found more than the step still needs; verl trims the same way)."""
    keep = informative_groups(scores, group_size)
    if max_groups is not None:
        keep = keep & (keep.cumsum(dim=0) <= max_groups)
    return keep.repeat_interleave(group_size)


@dataclass(frozen=True)
class SignalCounts:
    """One step's counts on this process; add them over processes (all_reduce the tensor from
    as_tensor, rebuild with from_tensor), then read the shares."""

    groups: float            # questions sampled
    equal_groups: float      # questions whose samples all got the same reward
    rows: float              # samples
    truncated_rows: float    # samples cut at the length limit (no stop token)
    unparsed_rows: float     # samples with no parsable answer

    def as_tensor(self, device=None) -> Tensor:
        """(5,) float64, in field order, for one all-reduce."""
        return torch.tensor([self.groups, self.equal_groups, self.rows, self.truncated_rows, self.unparsed_rows],
                            dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, counts: Tensor) -> "SignalCounts":
        """The inverse of as_tensor (after the all-reduce)."""
        return cls(*counts.tolist())

    def shares(self) -> dict[str, float]:
        """The metrics: no_signal_group_share, truncated_share, no_answer_share (0 when empty)."""
        return {"no_signal_group_share": self.equal_groups / max(self.groups, 1),
                "truncated_share": self.truncated_rows / max(self.rows, 1),
                "no_answer_share": self.unparsed_rows / max(self.rows, 1)}


def signal_counts(scores: Tensor, group_size: int, finished: Tensor, parsed: Tensor) -> SignalCounts:
    """scores: (B,); finished: (B,) bool, True where the row ended with a stop token; parsed: (B,)
    bool, True where an answer could be extracted. group_size: samples per question. With one sample
    per question no groups are counted: the value head, not the group, is the baseline there."""
    equal = ~informative_groups(scores, group_size) if group_size > 1 else scores.new_zeros(0, dtype=torch.bool)
    return SignalCounts(groups=float(equal.numel()), equal_groups=float(equal.sum()), rows=float(scores.numel()),
                        truncated_rows=float((~finished.bool()).sum()), unparsed_rows=float((~parsed.bool()).sum()))


def no_signal_streak(streak: int, no_signal_share: float, threshold: float = NO_SIGNAL_SHARE) -> int:
    """Consecutive steps whose share of all-equal groups exceeded threshold, this step included."""
    return streak + 1 if no_signal_share > threshold else 0


def no_signal_warning(streak: int, steps: int = NO_SIGNAL_STEPS, threshold: float = NO_SIGNAL_SHARE) -> str | None:
    """The one line to print when the streak first reaches `steps` (None at every other step)."""
    if streak != steps:
        return None
    return (f"for {steps} steps in a row, more than {threshold:.0%} of the questions got the same reward on "
            f"every sample, so their advantages are 0 and the policy learns nothing from them: the questions "
            f"are too easy or too hard for this model. Sample more per question (num_samples_per_question), "
            f"raise temperature, pick questions nearer the model's level, or turn on dynamic_sampling")
