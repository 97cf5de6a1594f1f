"""Sampling CoTs from a local model through reftune's own sampler (reftune.generation.rollout.sample): a hub id, a
model folder (a run's best/), smollm2-135m, or tiny."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reftune.annotate.client import Completion
from reftune.errors import ReftuneError
from reftune.generation.rollout import SamplingParams, sample
from reftune.model.loading import load_policy
from reftune.tasks.prompting import render_chat


@dataclass(frozen=True)
class LocalSamplingRequest:
    """What to sample for a batch of prompts."""

    prompts: list  # strings, or chat messages (lists of {"role", "content"}) when chat is on
    num_samples: int  # completions per prompt
    temperature: float
    top_p: float
    max_new_tokens: int


class LocalSampler:
    """A loaded model and its tokenizer; `complete` samples a batch of prompts in one call."""

    def __init__(self, model_name: str, tokenizer_texts: list[str], seed: int):
        self.policy = load_policy(model_name, tokenizer_texts=tokenizer_texts, seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.context = int(getattr(self.policy.model.config, "max_position_embeddings", 0) or 0)

    def render(self, prompt) -> str:
        """A plain prompt as it is; chat messages through the tokenizer's chat template."""
        if isinstance(prompt, str):
            return prompt
        rendered = render_chat(self.policy.tokenizer, prompt)
        if rendered is None:
            raise ReftuneError(f"model {self.policy.name} has no chat template: drop --chat to give it a plain prompt")
        return rendered

    def complete(self, request: LocalSamplingRequest) -> list[list[Completion]]:
        """request.num_samples completions for each prompt, in prompt order."""
        texts = [self.render(prompt) for prompt in request.prompts]
        lengths = [len(self.policy.tokenizer(text)["input_ids"]) for text in texts]
        if self.context and max(lengths) + request.max_new_tokens > self.context:
            raise ReftuneError(f"a prompt of {max(lengths)} tokens plus --max-new-tokens {request.max_new_tokens} "
                               f"exceeds the model's context of {self.context}: use a shorter --prompt-file "
                               f"or fewer new tokens")
        params = SamplingParams(temperature=request.temperature, top_p=request.top_p,
                                max_new_tokens=request.max_new_tokens, num_samples=request.num_samples)
        rollout = sample(self.policy.model, self.policy.tokenizer, texts, params, generator=self.generator)
        tokens_out = rollout.response_mask.sum(dim=1).tolist()
        completions = [Completion(text, lengths[row // request.num_samples], int(tokens_out[row]))
                       for row, text in enumerate(rollout.texts)]
        k = request.num_samples
        return [completions[index * k:(index + 1) * k] for index in range(len(texts))]
