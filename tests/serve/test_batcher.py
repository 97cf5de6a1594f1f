"""The Batcher answers concurrent requests with one sampling call and refuses what the model cannot take."""
from concurrent.futures import wait

import pytest

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
