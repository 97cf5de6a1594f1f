import pytest
import torch

from reftune.algorithms.losses import token_logps
from reftune.errors import ReftuneError
from reftune.generation.rollout import SamplingParams, filter_logits, sample
from reftune.model.response_forward import position_ids_from

PROMPTS = ["Question:\nAva has 3 apples.\nAnswer reasoning:\n", "Question:\nBen?\nAnswer reasoning:\n"]


def test_sampling_is_reproducible_under_a_seed(tiny_policy):
    params = SamplingParams(max_new_tokens=20, num_samples=3)
    runs = [sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS, params,
                   torch.Generator().manual_seed(seed)) for seed in (7, 7, 8)]
    assert torch.equal(runs[0].sequences, runs[1].sequences) and runs[0].texts == runs[1].texts
    assert not torch.equal(runs[0].sequences, runs[2].sequences)


def test_rollout_shapes_masks_and_prompt_index(tiny_policy):
    rollout = sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS,
                     SamplingParams(max_new_tokens=12, num_samples=2), torch.Generator().manual_seed(0))
    n, width = rollout.sequences.shape
    assert n == 4 and rollout.prompt_index.tolist() == [0, 0, 1, 1]
    assert rollout.response_mask[:, :rollout.prompt_length].sum() == 0
    assert ((rollout.response_mask == 1) <= (rollout.attention_mask == 1)).all()
    assert len(rollout.texts) == 4 and width <= rollout.prompt_length + 12


def test_sampling_logps_equal_a_full_forward(tiny_policy):
    rollout = sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS,
                     SamplingParams(max_new_tokens=16, num_samples=2), torch.Generator().manual_seed(1))
    logits = tiny_policy.model(input_ids=rollout.sequences, attention_mask=rollout.attention_mask,
                               position_ids=position_ids_from(rollout.attention_mask)).logits
    recomputed = token_logps(logits, rollout.sequences) * rollout.response_mask
    assert torch.allclose(recomputed, rollout.old_logps, atol=1e-4)


def test_greedy_sampling_matches_transformers_generate(tiny_policy):
    model, tokenizer = tiny_policy.model, tiny_policy.tokenizer
    rollout = sample(model, tokenizer, PROMPTS, SamplingParams(temperature=0, max_new_tokens=10))
    encoded = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    generated = model.generate(**encoded, max_new_tokens=10, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
    expected = [tokenizer.decode(row[encoded["input_ids"].size(1):], skip_special_tokens=True)
                for row in generated]
    assert rollout.texts == expected


def test_a_row_that_emits_eos_stops_while_others_go_on(tiny_policy):
    model, tokenizer = tiny_policy.model, tiny_policy.tokenizer
    eos = tokenizer.eos_token_id

    class EosAfterThree(torch.nn.Module):
        """Wraps the model so row 0 of the batch says EOS at its third token."""

        def __init__(self):
            super().__init__()
            self.inner, self.calls = model, 0
            self.generation_config = model.generation_config

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            self.calls += 1
            if self.calls == 3:
                out.logits[0, -1, :] = -1e9
                out.logits[0, -1, eos] = 1e9
            return out

    rollout = sample(EosAfterThree(), tokenizer, PROMPTS, SamplingParams(temperature=0, max_new_tokens=8))
    lengths = rollout.response_mask.sum(-1).tolist()
    assert lengths[0] == 3 and rollout.finished[0] and rollout.sequences[0, rollout.prompt_length + 2] == eos
    assert lengths[1] == 8 and not rollout.finished[1]
    assert (rollout.sequences[0, rollout.prompt_length + 3:] == tokenizer.pad_token_id).all()


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2, top_p=1.0)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_k=0, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_k=0, top_p=0.4)).tolist() == [[False, True, True, True]]


def test_bad_sampling_parameters_are_refused():
    with pytest.raises(ReftuneError):
        SamplingParams(top_p=0)
    with pytest.raises(ReftuneError):
        SamplingParams(num_samples=0)


def test_drafts_continue_the_latest_earlier_match_of_the_final_ngram():
    from reftune.generation.rollout import draft_tokens

    assert draft_tokens([1, 2, 3, 9, 1, 2, 3, 7, 5, 2, 3], 2) == [7, 5]  # "2 3" last seen before 7 5
    assert draft_tokens([1, 2, 3, 4, 5, 3], 3, shortest_ngram=1) == [4, 5, 3]  # only the 1-gram "3" recurs
    assert draft_tokens([1, 2, 3, 4, 5, 3], 3) == []  # 1-grams are not used by default
    assert draft_tokens([4, 8, 6, 1, 2], 3) == [] and draft_tokens([5], 3) == []


class CountingModel(torch.nn.Module):
    """Counts forward passes, so a test can see several tokens come out of one."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.calls = model, 0
        self.config, self.generation_config = model.config, model.generation_config

    def forward(self, **kwargs):
        self.calls += 1
        return self.inner(**kwargs)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_lookahead_at_batch_one_samples_the_same_tokens_in_fewer_passes(warm_tiny, temperature):
    """The drafts only decide how many positions one pass computes: each token is still drawn from
    its own distribution with the same random numbers, so the output is that of plain decoding.
    (A model that has learned the task's CoTs, which repeat their question's numbers.)"""
    from reftune.model.loading import load_policy
    from reftune.tasks import get_task

    policy = load_policy(warm_tiny)
    task = get_task("arithmetic")
    prompt = task.prompt(task.load("train")[0])
    counting = CountingModel(policy.model)
    runs = {}
    for lookahead in (0, 4):
        counting.calls = 0
        params = SamplingParams(temperature=temperature, max_new_tokens=120, lookahead=lookahead)
        runs[lookahead] = (sample(counting, policy.tokenizer, [prompt], params, torch.Generator().manual_seed(4)),
                           counting.calls)
    (plain, plain_calls), (drafted, drafted_calls) = runs[0], runs[4]
    assert torch.equal(plain.sequences, drafted.sequences)
    assert torch.allclose(plain.old_logps, drafted.old_logps, atol=1e-4)
    assert plain_calls == plain.num_generated_tokens and drafted_calls < 0.9 * plain_calls  # drafts were kept


@pytest.mark.slow  # warm_tiny: a few seconds of SFT, shared by the session
def test_observe_sees_every_token_once_in_order_with_the_logits_it_was_drawn_from(warm_tiny):
    """Batched rows that stop at different times, and one row alone whose drafted tokens are kept:
    what observe saw, row by row, is the rollout's response, and the log-softmax of the logits it
    saw is the sampling log-prob (temperature 1)."""
    from reftune.model.loading import load_policy
    from reftune.tasks import get_task

    policy = load_policy(warm_tiny)
    task = get_task("arithmetic")
    prompts = [task.prompt(e) for e in task.load("train")[:3]]
    for batch in (prompts, prompts[:1]):
        seen, logps = {}, {}

        def observe(rows, tokens, logits):
            chosen = logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
            for row, token, logp in zip(rows.tolist(), tokens.tolist(), chosen.tolist()):
                seen.setdefault(row, []).append(token)
                logps.setdefault(row, []).append(logp)

        rollout = sample(policy.model, policy.tokenizer, batch, SamplingParams(max_new_tokens=120, num_samples=2),
                         torch.Generator().manual_seed(3), observe=observe)
        for row in range(len(rollout.texts)):
            mask = rollout.response_mask[row].bool()
            assert seen[row] == rollout.sequences[row][mask].tolist()
            assert torch.allclose(torch.tensor(logps[row]), rollout.old_logps[row][mask], atol=1e-4)


def test_an_exception_in_observe_ends_sampling_and_leaves_the_model_as_it_was(tiny_policy):
    class Enough(Exception):
        pass

    def observe(rows, tokens, logits):
        raise Enough

    tiny_policy.model.train()
    with pytest.raises(Enough):
        sample(tiny_policy.model, tiny_policy.tokenizer, PROMPTS, SamplingParams(max_new_tokens=8), observe=observe)
    assert tiny_policy.model.training
