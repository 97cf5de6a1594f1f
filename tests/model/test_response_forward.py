"""The RL forward pass over rollouts: response positions only, each prompt run once per group."""
import pytest
import torch

from reftune.algorithms.losses import chosen_logps, token_logps
from reftune.generation.kv_cache import PreallocatedLayer, generation_cache
from reftune.generation.rollout import SamplingParams, sample
from reftune.model.heads import PolicyWithValueHead
from reftune.model.response_forward import cache_argument, position_ids_from
from reftune.model.response_forward import response_forward
from reftune.training.ppo import reference_forward

PROMPTS = ["Question:\nAva has 3 apples and 4 pears.\nAnswer reasoning:\n", "Question:\nBen?\nAnswer reasoning:\n"]


@pytest.fixture()
def rollout(tiny_policy):
    """Two prompts of different lengths (so one is left-padded), three samples each."""
    return sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS, SamplingParams(max_new_tokens=12, num_samples=3),
                  torch.Generator().manual_seed(0))


def plain_pass(model, rollout):
    """Logits and values of the whole rows, as `PolicyWithValueHead` gives them without sharing."""
    return model(rollout.sequences, rollout.attention_mask)


@pytest.mark.parametrize("group_size", [1, 3])
def test_response_outputs_equal_the_plain_pass_on_the_response(tiny_policy, rollout, group_size):
    model = PolicyWithValueHead(tiny_policy.model)
    torch.nn.init.normal_(model.value_head.weight)
    start = rollout.prompt_length
    plain_logits, plain_values = plain_pass(model, rollout)
    logits, values = model(rollout.sequences, rollout.attention_mask, start, group_size)
    width = rollout.sequences.size(1) - start
    assert logits.shape == (6, width, plain_logits.size(-1)) and values.shape == (6, width)
    real = rollout.response_mask[:, start:].bool()  # padding after a response may differ: never used
    assert torch.allclose(logits[real], plain_logits[:, start - 1:-1][real], atol=1e-4)  # the ones predicting
    assert torch.allclose(values[real], plain_values[:, start:][real], atol=1e-4)
    plain = token_logps(plain_logits, rollout.sequences)[:, start:]
    assert torch.allclose(chosen_logps(logits, rollout.sequences[:, start:])[real], plain[real], atol=1e-4)


def test_shared_prompts_give_the_plain_gradient(tiny_policy, rollout):
    """The prompt runs once for its three samples; autograd must still sum what each sample owes it."""
    model = PolicyWithValueHead(tiny_policy.model)
    start, real = rollout.prompt_length, rollout.response_mask[:, rollout.prompt_length:].float()
    weights = torch.randn(real.shape, generator=torch.Generator().manual_seed(3))

    def gradients(group_size):
        model.zero_grad()
        if group_size is None:
            logits, _ = plain_pass(model, rollout)
            logps = token_logps(logits, rollout.sequences)[:, start:]
        else:
            logits, _ = model(rollout.sequences, rollout.attention_mask, start, group_size)
            logps = chosen_logps(logits, rollout.sequences[:, start:])
        (logps * weights * real).sum().backward()
        return [p.grad.clone() for p in tiny_policy.model.parameters()]

    for plain, shared in zip(gradients(None), gradients(3)):
        assert torch.allclose(plain, shared, atol=1e-4, rtol=1e-3)


def test_groups_must_share_their_prompt(tiny_policy, rollout):
    with pytest.raises(ValueError, match="groups of 2"):  # rows 2 and 3 answer different prompts
        response_forward(tiny_policy.model, rollout.sequences, rollout.attention_mask, rollout.prompt_length, 2)


def test_sampling_with_the_value_head_gives_the_plain_pass_values(tiny_policy):
    """PPO reads old log-probs and values off the sampling passes: they must be the full pass's."""
    model = PolicyWithValueHead(tiny_policy.model)
    torch.nn.init.normal_(model.value_head.weight)
    batch = SamplingParams(max_new_tokens=12, num_samples=3)
    alone = SamplingParams(temperature=0, max_new_tokens=30)  # one row: drafts, several positions per pass
    for prompts, params in ((PROMPTS, batch), (PROMPTS[:1], alone)):
        rollout = sample(tiny_policy.model, tiny_policy.tokenizer, prompts, params,
                         torch.Generator().manual_seed(0), value_head=model.value_head)
        logits, values = plain_pass(model, rollout)
        mask = rollout.response_mask.bool()
        assert rollout.values[:, :rollout.prompt_length].abs().sum() == 0
        assert torch.allclose(rollout.values[mask], values[mask], atol=1e-4)
        assert torch.allclose(rollout.old_logps[mask], token_logps(logits, rollout.sequences)[mask], atol=1e-4)
    assert sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS, SamplingParams(max_new_tokens=4)).values is None


def test_reference_pass_fills_the_response_columns_only(tiny_policy, rollout):
    start, mask = rollout.prompt_length, rollout.response_mask.bool()
    for micro_batch_size in (3, 2):  # whole groups of 3 share their prompt; 2 cannot
        reference = reference_forward(tiny_policy.model, rollout.sequences, rollout.attention_mask, start,
                                      micro_batch_size, 3)
        assert reference[:, :start].abs().sum() == 0
        assert torch.allclose(reference[mask], rollout.old_logps[mask], atol=1e-4)  # the sampler's own log-probs


def test_at_another_temperature_the_reference_pass_gives_the_samplers_tempered_log_probs(tiny_policy):
    """RL at temperature 0.7: the reference (here the sampler itself) scores the tokens as they were
    drawn, so the KL starts at 0 and PPO's first ratio is 1."""
    tempered = sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS,
                      SamplingParams(temperature=0.7, max_new_tokens=12, num_samples=3), torch.Generator().manual_seed(0))
    mask = tempered.response_mask.bool()
    reference = reference_forward(tiny_policy.model, tempered.sequences, tempered.attention_mask,
                                  tempered.prompt_length, 3, 3, temperature=0.7)
    assert torch.allclose(reference[mask], tempered.old_logps[mask], atol=1e-4)
    untempered = reference_forward(tiny_policy.model, tempered.sequences, tempered.attention_mask,
                                   tempered.prompt_length, 3, 3)
    assert not torch.allclose(untempered[mask], tempered.old_logps[mask], atol=1e-2)


def test_preallocated_cache_decodes_like_the_plain_forward(tiny_policy):
    model = tiny_policy.model
    ids = torch.tensor([[0, 0, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
    positions = position_ids_from(mask)
    full = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    cache = generation_cache(model, capacity=6)  # smaller than needed: it must grow
    assert all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
    steps = [model(input_ids=ids[:, :4], attention_mask=mask[:, :4], position_ids=positions[:, :4],
                   **{cache_argument(model): cache}, use_cache=True).logits]
    for t in range(4, 8):
        steps.append(model(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                           position_ids=positions[:, t:t + 1], **{cache_argument(model): cache}, use_cache=True).logits)
    assert cache.get_seq_length() == 8
    assert torch.allclose(torch.cat(steps, dim=1)[0, 2:], full[0, 2:], atol=1e-4)
    assert torch.allclose(torch.cat(steps, dim=1)[1], full[1], atol=1e-4)
    cache.batch_select_indices(torch.tensor([1]))
    assert cache.layers[0].keys.shape[0] == 1 and cache.get_seq_length() == 8
