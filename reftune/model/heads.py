"""Scalar heads on a loaded causal LM's last hidden state: RL's value head (on the policy's own
backbone, as in the paper) and the reranking verifier's correctness head; their export and loading."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from reftune.errors import ReftuneError
from reftune.model.loading import load_policy, save_pretrained
from reftune.model.response_forward import position_ids_from, response_forward

VALUE_HEAD = "value_head.safetensors"
VERIFIER_HEAD = "verifier_head.safetensors"


def zero_head(backbone: nn.Module) -> nn.Linear:
    """A hidden_size -> 1 linear layer on the backbone's device and dtype, starting at 0: no made-up
    baseline for a value head, P(correct) = 0.5 for a verifier."""
    head = nn.Linear(backbone.config.hidden_size, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    parameter = next(backbone.parameters())
    return head.to(device=parameter.device, dtype=parameter.dtype)


class PolicyWithValueHead(nn.Module):
    """The policy and, for GAE, a scalar value head on its last hidden state, sharing the backbone (the
    paper: a separate value model gave the same accuracy at twice the compute). Estimators without a
    critic (the group family) get no head at all: nothing to build, optimise or synchronise."""

    def __init__(self, policy: nn.Module, value_head: bool = True):
        super().__init__()
        self.policy = policy
        self.value_head = zero_head(policy) if value_head else None

    @property
    def config(self):
        return self.policy.config

    @property
    def _no_split_modules(self):
        """The policy's layer classes: what accelerate's FSDP transformer auto-wrap shards one by one."""
        return getattr(self.policy, "_no_split_modules", None)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, response_start: int | None = None,
                group_size: int = 1, values_only: bool = False) -> tuple[Tensor, Tensor | None]:
        """input_ids, attention_mask: (B, T). Returns logits (B, T, V) and values (B, T), None
        without a value head.

        values[:, t] is the value of the state in which token t is chosen: the head's output on the
        hidden state at t - 1, aligned like the token log-probs (0 at t = 0), so GAE credits each
        token with what choosing it changed.

        With `response_start` P, only the columns from P on: logits (B, T - P, V) and values
        (B, T - P), each prompt run once per `group_size` rows (`response_forward.py`).

        values_only: the value loss reaches the head alone, not the shared backbone (the critic's
        warm-up, in which the policy must not move).
        """
        with_values = self.value_head is not None
        head = lambda hidden: self.value_head(hidden.detach() if values_only else hidden).squeeze(-1)  # noqa: E731
        if response_start is not None:
            logits, hidden = response_forward(self.policy, input_ids, attention_mask, response_start,
                                              group_size, with_hidden=with_values)
            return logits, head(hidden) if with_values else None
        output = self.policy(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                             position_ids=position_ids_from(attention_mask), output_hidden_states=with_values)
        if not with_values:
            return output.logits, None
        values = head(output.hidden_states[-1])
        return output.logits, torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], dim=1)

    def export(self, tokenizer, folder: str | os.PathLike, weights: dict | None = None) -> None:
        """A HF folder of the policy (loadable by transformers), plus value_head.safetensors.
        `weights`: this module's whole state dict when its parameters are shards (FSDP)."""
        save_pretrained(self.policy, tokenizer, folder, None if weights is None else with_prefix(weights, "policy."))
        if self.value_head is not None:
            save_head(self.value_head, Path(folder) / VALUE_HEAD,
                      None if weights is None else with_prefix(weights, "value_head."))


def with_prefix(weights: dict, prefix: str) -> dict:
    """The entries of a state dict under `prefix`, named as the submodule's own state dict names them.

    >>> with_prefix({"policy.lm_head.weight": 1, "value_head.bias": 2}, "policy.")
    {'lm_head.weight': 1}
    """
    return {name[len(prefix):]: value for name, value in weights.items() if name.startswith(prefix)}


def save_head(head: nn.Linear, path: Path, weights: dict | None = None) -> None:
    from safetensors.torch import save_file

    weights = head.state_dict() if weights is None else weights
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))


class Verifier(nn.Module):
    """A correctness classifier for reranking: a scalar head on the last hidden state of a causal
    LM's final token (the EOS after the completion), initialised from an SFT or ReFT checkpoint."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = zero_head(backbone)
        # The vocabulary projection plays no part in the score: an untied one is frozen, or DDP
        # would wait for its gradient.
        output, inputs = backbone.get_output_embeddings(), backbone.get_input_embeddings()
        if output is not None and output.weight is not inputs.weight:
            output.weight.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """input_ids, attention_mask: (B, T), padded on either side. Returns the logit of P(correct)
        at each row's last real token: (B,)."""
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from(attention_mask), output_hidden_states=True,
                               use_cache=False, logits_to_keep=1)  # the vocabulary projection is not needed
        columns = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.bool() * columns).argmax(dim=1)
        hidden = output.hidden_states[-1][torch.arange(len(last), device=last.device), last]
        return self.head(hidden).squeeze(-1).float()

    def export(self, tokenizer, folder: str | os.PathLike) -> None:
        """The backbone as a HF folder (LoRA merged) plus verifier_head.safetensors."""
        save_pretrained(self.backbone, tokenizer, folder)
        save_head(self.head, Path(folder) / VERIFIER_HEAD)


def check_verifier_folder(folder: str | os.PathLike) -> Path:
    """The head's path in a folder Verifier.export wrote; one line for anything else."""
    if not Path(folder).is_dir():
        problem = "is not a folder" if Path(folder).exists() else "does not exist"
        raise ReftuneError(f"verifier folder {folder} {problem}: give the folder `reftune verifier` wrote")
    head = Path(folder) / VERIFIER_HEAD
    if not head.exists() and (Path(folder) / "best" / VERIFIER_HEAD).exists():
        raise ReftuneError(f"{folder} is a `reftune verifier` run folder: name the verifier inside it, "
                           f"{Path(folder) / 'best'}")
    if not head.exists():
        raise ReftuneError(f"{folder} is not a verifier (no {VERIFIER_HEAD}): train one with `reftune verifier`")
    return head


def load_verifier(folder: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[Verifier, object]:
    """A verifier written by Verifier.export, and its tokenizer."""
    from safetensors.torch import load_file

    head = check_verifier_folder(folder)
    policy = load_policy(str(folder), device=device)
    verifier = Verifier(policy.model)
    verifier.head.load_state_dict(load_file(str(head), device=str(device)))
    return verifier.eval(), policy.tokenizer
