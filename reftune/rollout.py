"""Batched sampling with a KV cache, returning a `Rollout` that the RL stage trains on as it is.

Faster than a plain `model.generate` loop for the same samples because it
  - runs each prompt's prefill once and copies the cache for its K samples;
  - asks the model for the last position's logits only;
  - drops finished rows from the batch (and the cache), so long stragglers run alone;
and it keeps the sampling log-probs, so the RL stage need not recompute them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reftune.errors import ReftuneError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    """0 means greedy. RECIPE.md: 1.0 for RL, voting and self-training samples."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 keeps all (the paper)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps all (the paper)."""
    max_new_tokens: int = 300
    """Longest response; the paper allows prompt + completion <= 700 tokens."""
    num_samples: int = 1
    """Samples per prompt (rows of one prompt are adjacent in the Rollout)."""

    def __post_init__(self):
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ReftuneError(f"sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1, got "
                               f"{self.temperature}, {self.top_k}, {self.top_p}")
        if self.max_new_tokens < 1 or self.num_samples < 1:
            raise ReftuneError("max_new_tokens and num_samples must be >= 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Rollout:
    """N = prompts * num_samples rows; P = longest prompt; T = longest response."""

    sequences: Tensor       # (N, P + T) left-padded prompt, then the response, right-padded
    attention_mask: Tensor  # (N, P + T) 1 on real prompt tokens and on generated tokens
    response_mask: Tensor   # (N, P + T) 1 on generated tokens, the stop token included
    old_logps: Tensor       # (N, P + T) log-prob of each generated token when sampled; 0 elsewhere
    prompt_index: Tensor    # (N,) the prompt each row answers
    finished: Tensor        # (N,) True where the row ended with a stop token (not cut at max length)
    texts: list[str]        # the responses as text, stop token removed
    prompt_length: int      # P

    @property
    def num_generated_tokens(self) -> int:
        return int(self.response_mask.sum())


def filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """logits: (B, V). Sets to -inf what top-k and then nucleus (top-p) filtering remove."""
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # Remove a token when the mass before it already reaches top_p (the first always stays).
        remove_sorted = probs.cumsum(-1) - probs >= top_p
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def choose_tokens(logits: Tensor, params: SamplingParams, generator: torch.Generator | None
                  ) -> tuple[Tensor, Tensor]:
    """logits: (B, V) -> chosen tokens (B,) and their log-probs (B,) under the tempered policy."""
    if params.greedy:
        tokens = logits.argmax(-1)
        return tokens, logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    logps = (logits / params.temperature).log_softmax(-1)
    filtered = filter_logits(logits / params.temperature, params.top_k, params.top_p)
    tokens = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(-1)
    return tokens, logps.gather(-1, tokens[:, None]).squeeze(-1)


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS plus any the model's generation config names (chat models have several)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def encode_prompts(tokenizer, prompts: list[str], device) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and attention mask: (B, P) each."""
    if tokenizer.padding_side != "left":
        raise ReftuneError("generation needs a left-padding tokenizer (models.prepare_tokenizer sets it)")
    encoded = tokenizer(prompts, padding=True, return_tensors="pt")
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], params: SamplingParams,
           generator: torch.Generator | None = None) -> Rollout:
    """Sample `params.num_samples` responses per prompt; each row stops at a stop token, the batch
    when all rows have stopped or reached max_new_tokens. Reproducible for a seeded `generator`."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device)
    k = params.num_samples
    stops = torch.tensor(stop_token_ids(model, tokenizer), device=device)
    was_training = model.training
    model.eval()

    # 1. prefill each distinct prompt once, then copy its cache for its K samples
    cache = DynamicCache()
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1].float()
    if k > 1:
        cache.batch_repeat_interleave(k)
        logits = logits.repeat_interleave(k, 0)
    n = len(prompts) * k
    mask = prompt_mask.repeat_interleave(k, 0)
    next_position = positions[:, -1].repeat_interleave(k, 0) + 1

    # 2. decode; `active` holds the rows still generating, in cache order. Without padding the mask
    # is all ones and is left out, which lets attention take its unmasked fast path.
    padded = not bool(prompt_mask.all())
    tokens = torch.full((n, params.max_new_tokens), tokenizer.pad_token_id, device=device)
    logps = torch.zeros(n, params.max_new_tokens, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    active = torch.arange(n, device=device)
    for step in range(params.max_new_tokens):
        chosen, chosen_logps = choose_tokens(logits, params, generator)
        tokens[active, step] = chosen
        logps[active, step] = chosen_logps
        lengths[active] += 1
        stopped = torch.isin(chosen, stops)
        finished[active[stopped]] = True
        if step + 1 == params.max_new_tokens or bool(stopped.all()):
            break
        if bool(stopped.any()):  # 3. drop finished rows from the batch and the cache
            keep = (~stopped).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            active, chosen, mask, next_position = active[keep], chosen[keep], mask[keep], next_position[keep]
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
        out = model(input_ids=chosen[:, None], attention_mask=mask if padded else None,
                    position_ids=next_position[:, None], past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1].float()
        next_position = next_position + 1

    model.train(was_training)
    return assemble_rollout(tokenizer, prompt_ids.repeat_interleave(k, 0), prompt_mask.repeat_interleave(k, 0),
                            tokens, logps, lengths, finished, k)


def assemble_rollout(tokenizer, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, logps: Tensor,
                     lengths: Tensor, finished: Tensor, num_samples: int) -> Rollout:
    """Join prompts (N, P) and responses (N, max_new_tokens) into a Rollout trimmed to the longest."""
    width = int(lengths.max())
    tokens, logps = tokens[:, :width], logps[:, :width]
    response_mask = (torch.arange(width, device=tokens.device)[None, :] < lengths[:, None]).long()
    texts = []
    for row, length, stopped in zip(tokens.tolist(), lengths.tolist(), finished.tolist()):
        texts.append(tokenizer.decode(row[:length - 1] if stopped else row[:length], skip_special_tokens=True))
    prompt_length = prompt_ids.size(1)
    zeros = torch.zeros_like(prompt_mask)
    return Rollout(
        sequences=torch.cat([prompt_ids, tokens], dim=1),
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
        response_mask=torch.cat([zeros, response_mask], dim=1),
        old_logps=torch.cat([zeros.float(), logps * response_mask], dim=1),
        prompt_index=torch.arange(len(tokens), device=tokens.device) // num_samples,
        finished=finished,
        texts=texts,
        prompt_length=prompt_length,
    )
