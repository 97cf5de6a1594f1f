"""Batched sampling with a KV cache, returning a `Rollout` that the RL stage trains on as it is.

Faster than a plain `model.generate` loop for the same samples because it
  - runs each prompt's prefill once and copies the cache for its K samples;
  - asks the model for the last position's logits only;
  - drops finished rows from the batch (and the cache), so long stragglers run alone;
  - writes the cache into buffers allocated once (`kv_cache.py`), not regrown every token;
  - when one row is left (batch 1, or the last straggler), drafts its next tokens from its own text
    and checks them in one forward pass: several tokens for the memory traffic of one;
and it keeps the sampling log-probs, so the RL stage need not recompute them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from reftune.config import SamplingOptions
from reftune.errors import ReftuneError
from reftune.model.response_forward import cache_argument


# Not frozen, as the options it extends are not (a config fills some in as it is checked); a sampling
# call reads its parameters and never changes them: dataclasses.replace makes other ones.
@dataclass(kw_only=True)
class SamplingParams(SamplingOptions):
    """What one sampling call reads: the sampling options (temperature, top_k, top_p, max_new_tokens),
    the samples per prompt, and the lookahead of a row decoding alone."""

    num_samples: int = 1
    """Samples per prompt (rows of one prompt are adjacent in the Rollout)."""
    lookahead: int = 4
    """When one row is left generating, guess this many next tokens from its own text and verify
    them in one forward pass (exact: the samples are drawn from the same distributions); 0 = off.
    Why 4: docs/performance.md."""

    def __post_init__(self):
        self.check_sampling()
        if self.num_samples < 1 or self.lookahead < 0:
            raise ReftuneError(f"num_samples must be >= 1 and lookahead >= 0, got {self.num_samples}, {self.lookahead}")

    @classmethod
    def of(cls, options: SamplingOptions, num_samples: int = 1) -> SamplingParams:
        """The sampling options of a command's config, with `num_samples` samples per prompt."""
        return cls(**{field.name: getattr(options, field.name) for field in fields(SamplingOptions)},
                   num_samples=num_samples)

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
    values: Tensor | None = None  # (N, P + T) value of the state each token was chosen in (given a value head)

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
        raise ReftuneError("generation needs a left-padding tokenizer (reftune.model.loading.prepare_tokenizer sets it)")
    encoded = tokenizer(prompts, padding=True, return_tensors="pt")
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], params: SamplingParams,
           generator: torch.Generator | None = None, value_head=None, observe=None) -> Rollout:
    """Sample `params.num_samples` responses per prompt; each row stops at a stop token, the batch
    when all rows have stopped or reached max_new_tokens. Reproducible for a seeded `generator`.

    With a `value_head` (a module on the last hidden state), the Rollout also holds its value of
    the state each token was chosen in, read off the hidden states decoding computes anyway: PPO
    then needs no forward pass of its own for old log-probs and values.

    observe(rows, tokens, logits), when given, sees every token as it is chosen: rows (a,) the rows
    (of the N) choosing, tokens (a,) their choices, logits (a, V) the untempered logits they were
    chosen from. Each row's tokens come in order, each exactly once; an exception it raises ends the
    sampling (the server streams text and drops abandoned requests this way)."""
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device)
    stops = torch.tensor(stop_token_ids(model, tokenizer), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():  # less bookkeeping per op than no_grad; only new tensors leave it
            responses = decode(model, prompt_ids, prompt_mask, params, stops, tokenizer.pad_token_id, generator,
                               value_head, observe)
    finally:
        model.train(was_training)
    k = params.num_samples
    return assemble_rollout(tokenizer, prompt_ids.repeat_interleave(k, 0), prompt_mask.repeat_interleave(k, 0),
                            responses, k, with_values=value_head is not None)


@dataclass
class Responses:
    """What decoding has produced so far for N rows, written in place."""

    tokens: Tensor    # (N, max_new_tokens)
    logps: Tensor     # (N, max_new_tokens)
    values: Tensor    # (N, max_new_tokens), zeros without a value head
    lengths: Tensor   # (N,)
    finished: Tensor  # (N,) ended with a stop token

    def record(self, rows: Tensor, chosen: Tensor, chosen_logps: Tensor, values: Tensor, stops: Tensor) -> Tensor:
        """Append one token to each of `rows`; returns which of them have ended (stop token or full)."""
        position = self.lengths[rows]
        self.tokens[rows, position] = chosen
        self.logps[rows, position] = chosen_logps
        self.values[rows, position] = values
        self.lengths[rows] = position + 1
        stopped = torch.isin(chosen, stops)
        self.finished[rows[stopped]] = True
        return stopped | (position + 1 == self.tokens.size(1))


def decode(model, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams, stops: Tensor, pad_id: int,
           generator: torch.Generator | None, value_head=None, observe=None) -> Responses:
    """The decoding loop over a left-padded prompt batch (B, P); rows of one prompt are adjacent.
    observe: see sample()."""
    from reftune.generation.kv_cache import generation_cache  # imports transformers: only when sampling

    k, device = params.num_samples, prompt_ids.device
    cache = generation_cache(model, prompt_ids.size(1) + params.max_new_tokens + params.lookahead)
    cache_key = cache_argument(model)

    def forward(**inputs) -> tuple[Tensor, Tensor]:
        """Logits (a, w, V) and values (a, w) of the positions whose logits the model returns."""
        out = model(**inputs, **{cache_key: cache}, use_cache=True, output_hidden_states=value_head is not None)
        if value_head is None:
            return out.logits.float(), out.logits.new_zeros(out.logits.shape[:2], dtype=torch.float)
        return out.logits.float(), value_head(out.hidden_states[-1][:, -out.logits.size(1):]).squeeze(-1).float()

    def choose(step_logits: Tensor) -> tuple[Tensor, Tensor]:  # for the rows in `active` as it stands
        tokens, logps = choose_tokens(step_logits, params, generator)
        if observe is not None:
            observe(active, tokens, step_logits)
        return tokens, logps

    # 1. prefill each distinct prompt once, then copy its cache for its K samples
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    logits, values = forward(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                             logits_to_keep=1)
    logits, values = logits[:, -1], values[:, -1]
    if k > 1:
        cache.batch_repeat_interleave(k)
        logits, values = logits.repeat_interleave(k, 0), values.repeat_interleave(k, 0)
    n = len(prompt_ids) * k
    mask = prompt_mask.repeat_interleave(k, 0)
    next_position = positions[:, -1].repeat_interleave(k, 0) + 1
    responses = Responses(torch.full((n, params.max_new_tokens), pad_id, device=device),
                          torch.zeros(n, params.max_new_tokens, device=device),
                          torch.zeros(n, params.max_new_tokens, device=device),
                          torch.zeros(n, dtype=torch.long, device=device), torch.zeros(n, dtype=torch.bool, device=device))

    # 2. decode; `active` holds the rows still generating, in cache order. Without padding the mask
    # is all ones and is left out, which lets attention take its unmasked fast path.
    padded = not bool(prompt_mask.all())
    active = torch.arange(n, device=device)
    chosen, chosen_logps = choose(logits)
    while True:
        ended = responses.record(active, chosen, chosen_logps, values, stops)
        if bool(ended.all()):
            return responses
        if bool(ended.any()):  # 3. drop ended rows from the batch and the cache
            keep = (~ended).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            active, chosen, mask, next_position = active[keep], chosen[keep], mask[keep], next_position[keep]
        # 4. one row left (batch 1, or the last straggler): guess its next tokens from the text so far
        # and check them in the same forward pass (below); otherwise one token per pass
        drafts = []
        if len(active) == 1 and params.lookahead:
            row = int(active[0])
            context = prompt_ids[row // k][prompt_mask[row // k].bool()].tolist() + \
                responses.tokens[row, :int(responses.lengths[row])].tolist()
            drafts = draft_tokens(context, params.lookahead)
        step_ids = torch.cat([chosen, chosen.new_tensor(drafts)])[None] if drafts else chosen[:, None]
        width = step_ids.size(1)
        mask = torch.cat([mask, mask.new_ones(len(active), width)], dim=-1)
        step_logits, step_values = forward(input_ids=step_ids, attention_mask=mask if padded else None,
                                           position_ids=next_position[:, None] + torch.arange(width, device=device))
        # 5. sample each position in turn; a draft token is kept while the sample equals it. That is
        # exact sampling: P(keep d) = p(d), and a sample that differs is drawn from p without d.
        accepted = 0
        chosen, chosen_logps = choose(step_logits[:, 0])
        while accepted < len(drafts) and int(chosen) == drafts[accepted]:
            if bool(responses.record(active, chosen, chosen_logps, step_values[:, accepted], stops).all()):
                return responses
            accepted += 1
            chosen, chosen_logps = choose(step_logits[:, accepted])
        values = step_values[:, accepted]
        if accepted < len(drafts):  # forget the positions of the drafts that were not kept
            cache.crop(accepted - len(drafts))
            mask = mask[:, :accepted - len(drafts)]
        next_position = next_position + 1 + accepted


def draft_tokens(context: list[int], count: int, longest_ngram: int = 3, shortest_ngram: int = 2) -> list[int]:
    """Prompt-lookup drafting: up to `count` tokens that followed the latest earlier occurrence of
    the context's final n-gram (the longest n that occurs first). Worked CoTs repeat the numbers
    and phrases of their question and of their own earlier steps, so these guesses are often right.
    (A single repeated token predicts too little to pay for the wider pass: n >= 2 by default.)"""
    for n in range(min(longest_ngram, len(context) - 1), shortest_ngram - 1, -1):
        tail = context[-n:]
        for start in range(len(context) - n - 1, -1, -1):
            if context[start:start + n] == tail:
                return context[start + n:start + n + count]
    return []


def assemble_rollout(tokenizer, prompt_ids: Tensor, prompt_mask: Tensor, responses: Responses,
                     num_samples: int, with_values: bool) -> Rollout:
    """Join prompts (N, P) and responses (N, max_new_tokens) into a Rollout trimmed to the longest."""
    lengths, finished = responses.lengths, responses.finished.clone()
    width = int(lengths.max())
    tokens, logps, values = (t[:, :width] for t in (responses.tokens, responses.logps, responses.values))
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
        values=torch.cat([zeros.float(), values * response_mask], dim=1) if with_values else None,
        prompt_index=torch.arange(len(tokens), device=tokens.device) // num_samples,
        finished=finished,
        texts=texts,
        prompt_length=prompt_length,
    )


def select_rows(rollout: Rollout, rows: Tensor) -> Rollout:
    """The rollout's rows where `rows` (N,) bool is True, in order (whole prompts' groups, when a
    caller keeps or drops groups together)."""
    index = rows.nonzero().squeeze(1)
    pick = lambda t: None if t is None else t[index]  # noqa: E731
    return Rollout(sequences=rollout.sequences[index], attention_mask=rollout.attention_mask[index],
                   response_mask=rollout.response_mask[index], old_logps=rollout.old_logps[index],
                   prompt_index=rollout.prompt_index[index], finished=rollout.finished[index],
                   texts=[rollout.texts[i] for i in index.tolist()], prompt_length=rollout.prompt_length,
                   values=pick(rollout.values))


def concat_rollouts(rollouts: list[Rollout], pad_id: int) -> Rollout:
    """One rollout of the rows of several, whose prompts and responses may differ in length: prompts
    stay left-padded to the longest prompt (P), responses right-padded to the longest response (T).
    Prompt indices are renumbered so that each part's prompts stay distinct."""
    P = max(r.prompt_length for r in rollouts)
    T = max(r.sequences.size(1) - r.prompt_length for r in rollouts)
    parts: dict[str, list[Tensor]] = {"sequences": [], "attention_mask": [], "response_mask": [], "old_logps": [],
                                      "values": []}
    prompt_index, offset = [], 0
    for r in rollouts:
        shift = (P - r.prompt_length, T - (r.sequences.size(1) - r.prompt_length))  # (left, right) padding
        for name in parts:
            tensor = getattr(r, name)
            if tensor is not None:
                parts[name].append(torch.nn.functional.pad(tensor, shift, value=pad_id if name == "sequences" else 0))
        prompt_index.append(r.prompt_index + offset)
        offset += int(r.prompt_index.max()) + 1 if len(r.prompt_index) else 0
    with_values = all(r.values is not None for r in rollouts)
    return Rollout(sequences=torch.cat(parts["sequences"]), attention_mask=torch.cat(parts["attention_mask"]),
                   response_mask=torch.cat(parts["response_mask"]), old_logps=torch.cat(parts["old_logps"]),
                   prompt_index=torch.cat(prompt_index), finished=torch.cat([r.finished for r in rollouts]),
                   texts=[text for r in rollouts for text in r.texts], prompt_length=P,
                   values=torch.cat(parts["values"]) if with_values else None)
