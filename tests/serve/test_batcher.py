"""The Batcher answers concurrent requests with one sampling call and refuses what the model cannot take."""
import time
from concurrent.futures import wait
from types import SimpleNamespace

import pytest
import torch

from reftune.serve.batcher import Batcher
from reftune.serve.protocol import BadRequest, GenerationRequest


def request(prompt: str, n: int = 1, max_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest([prompt], max_tokens, 1.0, 1.0, n, ("\n\n",), chat=False)


@pytest.mark.slow  # the tiny_policy fixture fits a tokenizer and builds a model
def test_requests_waiting_together_share_one_sampling_call(tiny_policy):
    batcher = Batcher(tiny_policy, max_batch=16, seed=0)
    try:
        futures = [batcher.submit(request(f"Question:\nWhat is {i} + 1?\n", n=2)) for i in range(5)]
        wait(futures, timeout=120)
        results = [future.result() for future in futures]
        assert [len(r) for r in results] == [2] * 5
        assert all(g.prompt_tokens > 0 and g.finish_reason in ("stop", "length") for r in results for g in r)
        assert sum(batcher.batch_sizes) == 10 and max(batcher.batch_sizes) > 2  # batched, not one by one
    finally:
        batcher.close()


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_refused_at_once(tiny_policy):
    batcher = Batcher(tiny_policy, max_batch=4, seed=0)
    try:
        with pytest.raises(BadRequest, match="exceeds the model's context of 1024"):
            batcher.submit(request("1 2 " * 600))
        with pytest.raises(BadRequest, match="no chat template"):
            batcher.submit(GenerationRequest([[{"role": "user", "content": "hi"}]], 8, 1.0, 1.0, 1, (), chat=True))
        assert len(batcher.submit(request("Question:\n")).result(timeout=60)) == 1  # still serving
    finally:
        batcher.close()


@pytest.mark.slow
def test_chat_messages_go_through_the_models_chat_template(tiny_policy):
    tiny_policy.tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                                           "{% if add_generation_prompt %}assistant: {% endif %}")
    batcher = Batcher(tiny_policy, max_batch=4, seed=0)
    try:
        messages = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "What is 2 + 3?"}]
        assert batcher.render(messages) == "system: Solve it.\nuser: What is 2 + 3?\nassistant: "
        chat = GenerationRequest([messages], 8, 0.0, 1.0, 1, (), chat=True)
        [generation] = batcher.submit(chat).result(timeout=60)
        assert generation.prompt_tokens == len(tiny_policy.tokenizer(batcher.render(messages))["input_ids"])
    finally:
        batcher.close()


@pytest.mark.slow
def test_a_request_larger_than_max_batch_is_sampled_in_pieces_of_max_batch(tiny_policy):
    batcher = Batcher(tiny_policy, max_batch=4, seed=0)
    try:
        generations = batcher.submit(request("Question:\n", n=10)).result(timeout=120)
        assert len(generations) == 10 and batcher.batch_sizes == [4, 4, 2]  # memory bounded by max_batch rows
    finally:
        batcher.close()


@pytest.mark.slow
def test_streamed_pieces_add_up_to_each_choice_and_log_probs_cover_its_tokens(tiny_policy):
    batcher = Batcher(tiny_policy, max_batch=4, seed=0)
    try:
        pieces = []
        streamed = GenerationRequest(["Question:\n", "What is 2 + 3?\n"], 24, 1.0, 1.0, 3, ("\n\n",), chat=False,
                                     logprobs=2, stream=True)
        generations = batcher.submit(streamed, pieces.append).result(timeout=120)
        assert len(generations) == 6 and batcher.batch_sizes == [4, 2]  # in pieces of max_batch, still streamed
        for index, generation in enumerate(generations):
            mine = [p for p in pieces if p.index == index]
            assert "".join(p.text for p in mine) == generation.text
            assert [p.finish_reason for p in mine][-1] == generation.finish_reason
            assert [e for p in mine for e in p.logprobs] == list(generation.logprobs)
            assert "".join(e.token for e in generation.logprobs) == generation.text
            assert all(len(e.top) == 2 and e.top[0][1] >= e.top[1][1] and e.logprob <= e.top[0][1] + 1e-6
                       for e in generation.logprobs)
    finally:
        batcher.close()


class EndlessSlowModel(torch.nn.Module):
    """The tiny model made to never say EOS and to take 20 ms a step: a long generation to abandon."""

    def __init__(self, model, stop_ids):
        super().__init__()
        self.inner, self.stop_ids, self.calls = model, stop_ids, 0
        self.config, self.generation_config = model.config, model.generation_config

    def forward(self, **kwargs):
        self.calls += 1
        time.sleep(0.02)
        out = self.inner(**kwargs)
        out.logits[..., self.stop_ids] = float("-inf")
        return out


@pytest.mark.slow
def test_an_abandoned_request_stops_its_sampling_call_and_leaves_the_queue(tiny_policy):
    from reftune.generation.rollout import stop_token_ids

    slow = EndlessSlowModel(tiny_policy.model, stop_token_ids(tiny_policy.model, tiny_policy.tokenizer))
    batcher = Batcher(SimpleNamespace(model=slow, tokenizer=tiny_policy.tokenizer), max_batch=4, seed=0)
    try:
        pieces = []
        running = batcher.submit(GenerationRequest(["Question:\n"], 900, 1.0, 1.0, 1, (), chat=False, stream=True),
                                 pieces.append)
        waiting = GenerationRequest(["Question:\n"], 900, 0.5, 1.0, 1, (), chat=False)  # its own call, after
        queued = batcher.submit(waiting)
        deadline = time.monotonic() + 60
        while not pieces and time.monotonic() < deadline:
            time.sleep(0.01)
        running.cancel(), queued.cancel()  # both clients went away: one mid-stream, one still queued
        time.sleep(0.5)
        calls = slow.calls
        time.sleep(0.5)
        assert slow.calls == calls < 200, "the model still runs for nobody"  # 900 tokens would take 18 s
        assert batcher.batch_sizes == []  # no call ran to its end
        assert len(batcher.submit(request("Question:\n", max_tokens=2)).result(timeout=60)) == 1  # still serving
    finally:
        batcher.close()
