"""The forward pass RL makes over sampled rows: outputs for the response positions only, and each
prompt run once for its K samples.

A rollout's rows are a left-padded prompt (columns < P) and a response (columns >= P); the K samples
of a question are adjacent rows with the same prompt. What RL needs is the distribution over each
response token, which comes from positions P - 1 .. L - 2. So:
  - the LM head (and its log-softmax) runs on those positions only, never on the prompt's;
  - with K > 1 the prompt goes through the model once per question; its keys and values are then
    repeated for the K rows, which the responses attend to as to a generation cache. The numbers are
    those of the plain pass; under autograd the prompt's gradient is the sum over its K rows, as in
    the plain pass. Where prompts are a large share of each row and K > 1, this removes a good part of
    the compute of every forward and backward pass over a rollout.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reftune.model.loading import layers_checkpointed_now


def response_forward(causal_lm, input_ids: Tensor, attention_mask: Tensor, response_start: int,
                     group_size: int = 1, with_hidden: bool = False) -> tuple[Tensor, Tensor | None]:
    """input_ids, attention_mask: (B, L), prompts in columns < response_start = P.

    Returns logits (B, L - P, V), column j giving the distribution of the token in column P + j,
    and, with `with_hidden`, the last hidden state at the same positions (B, L - P, H), else None.
    With group_size K > 1, rows come in groups of K with identical prompt columns (as
    `rollout.sample` writes them) and each group's prompt runs once, unless the pass is gradient
    checkpointed (then each row runs whole: the same numbers, more compute).
    """
    from transformers import DynamicCache

    rows, length = input_ids.shape
    positions = position_ids_from(attention_mask)
    if group_size > 1 and layers_checkpointed_now(causal_lm):
        group_size = 1  # checkpointed layers run without a KV cache: no prompt to share, the plain pass
    if group_size == 1:
        out = causal_lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                        use_cache=False, output_hidden_states=with_hidden,
                        logits_to_keep=length - response_start + 1)
        hidden = out.hidden_states[-1][:, response_start - 1:-1] if with_hidden else None
        return out.logits[:, :-1], hidden

    check_groups(input_ids[:, :response_start], group_size)
    cache, cache_key = DynamicCache(config=causal_lm.config), cache_argument(causal_lm)
    firsts = slice(None, None, group_size)
    prompt = causal_lm(input_ids=input_ids[firsts, :response_start],
                       attention_mask=attention_mask[firsts, :response_start],
                       position_ids=positions[firsts, :response_start], **{cache_key: cache}, use_cache=True,
                       output_hidden_states=with_hidden, logits_to_keep=1)
    cache.batch_repeat_interleave(group_size)
    response = causal_lm(input_ids=input_ids[:, response_start:], attention_mask=attention_mask,
                         position_ids=positions[:, response_start:], **{cache_key: cache}, use_cache=True,
                         output_hidden_states=with_hidden)
    join = lambda last_of_prompt, of_response: torch.cat(  # noqa: E731
        [last_of_prompt.repeat_interleave(group_size, dim=0), of_response[:, :-1]], dim=1)
    logits = join(prompt.logits[:, -1:], response.logits)
    hidden = join(prompt.hidden_states[-1][:, -1:], response.hidden_states[-1]) if with_hidden else None
    return logits, hidden


def position_ids_from(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: (B, T) -> (B, T), 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def cache_argument(causal_lm) -> str:
    """The keyword a model's forward takes its KV cache by: `cache` in current transformers
    (`past_key_values` is deprecated there), `past_key_values` in earlier 5.x releases. Read off the
    first transformers model inside `causal_lm` (a peft wrapper, or any module wrapping one)."""
    import inspect

    from transformers import PreTrainedModel

    base = next((m for m in causal_lm.modules() if isinstance(m, PreTrainedModel)), causal_lm)
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def check_groups(prompts: Tensor, group_size: int) -> None:
    """prompts: (B, P). Rows must come in groups of `group_size` identical prompts."""
    rows = prompts.size(0)
    if rows % group_size or not bool((prompts.view(rows // group_size, group_size, -1)
                                      == prompts[::group_size, None]).all()):
        raise ValueError(f"rows must come in groups of {group_size} with the same prompt")


def shareable_group_size(micro_batch_size: int, group_size: int) -> int:
    """How many samples per prompt a micro-batch of `micro_batch_size` rows can share: all of them
    when micro-batches hold whole groups, else none (1)."""
    return group_size if micro_batch_size % group_size == 0 else 1
