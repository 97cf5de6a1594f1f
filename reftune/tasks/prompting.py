"""How a question becomes the text a model reads, in one of two layouts:

- plain: the authors' layout, "Question:\\n...\\nAnswer reasoning:\\n", with the target written straight after;
- chat: the question, with an instruction to end on the answer line, is the user's turn of the tokenizer's
  own chat template (after an optional system prompt and few-shot turns); the target is the assistant's
  turn, which the EOS token closes (chat models end a turn with their EOS: `<|im_end|>`, `<|eot_id|>`).

`auto` picks chat when the tokenizer has a template. A task formats every prompt through its
`prompt_format` (SFT, sampling, RL, eval, the verifier), and everything that renders chat messages
(`serve`, `annotate`) goes through `render_chat`, the one call of `apply_chat_template`.

>>> plain = PromptFormat(shots=(("1 + 1?", "1 + 1 = 2"),))
>>> print(plain.prompt("2 + 2?", "nl"))
Question:
1 + 1?
Answer reasoning:
1 + 1 = 2
<BLANKLINE>
Question:
2 + 2?
Answer reasoning:
<BLANKLINE>
"""
from __future__ import annotations

from dataclasses import dataclass

from reftune.errors import ReftuneError
from reftune.tasks.answers import ANSWER_TRIGGER

PROMPT_FORMATS = ("auto", "plain", "chat")
PROMPT_TEMPLATE = "Question:\n{question}\nAnswer reasoning:\n"  # the authors' format (Luong et al. 2024, their scripts)
# What the user's turn asks for, so that an instruct model writes what the reward reads.
INSTRUCTIONS = {
    "nl": f"Solve it step by step, then give the answer on a last line that begins '{ANSWER_TRIGGER}'.",
    "python": "Write a Python function solution() that computes the answer step by step and returns it. "
              "Write only the function.",
}


def render_chat(tokenizer, messages: list[dict]) -> str | None:
    """Chat messages as the model reads them, through its tokenizer's chat template (ending with the
    assistant's turn opened); None when the tokenizer has no template."""
    if not has_chat_template(tokenizer):
        return None
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def user_turn(question: str, style: str) -> dict:
    return {"role": "user", "content": f"{question}\n\n{INSTRUCTIONS[style]}"}


@dataclass(frozen=True, eq=False)
class PromptFormat:
    """The layout of a task's prompts. `chat_tokenizer` None means plain; `shots` are few-shot
    (question, target) pairs written before the question, as earlier turns in chat."""

    chat_tokenizer: object | None = None
    system_prompt: str | None = None
    shots: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return "plain" if self.chat_tokenizer is None else "chat"

    def prompt(self, question: str, style: str) -> str:
        if self.chat_tokenizer is None:
            system = f"{self.system_prompt}\n\n" if self.system_prompt else ""
            shots = "".join(PROMPT_TEMPLATE.format(question=q) + target + "\n\n" for q, target in self.shots)
            return system + shots + PROMPT_TEMPLATE.format(question=question)
        return without_leading_bos(self.chat_tokenizer, render_chat(self.chat_tokenizer, self.messages(question, style)))

    def messages(self, question: str, style: str) -> list[dict]:
        """The conversation up to the question: system prompt, few-shot turns, the user's turn."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for shot_question, target in self.shots:
            messages += [user_turn(shot_question, style), {"role": "assistant", "content": target}]
        return messages + [user_turn(question, style)]


PLAIN = PromptFormat()


def choose_prompt_format(tokenizer, prompt_format: str = "auto", system_prompt: str | None = None,
                         shots: list[tuple[str, str]] | tuple = ()) -> PromptFormat:
    """The format `prompt_format` names for this tokenizer: auto is chat when it has a template."""
    if prompt_format not in PROMPT_FORMATS:
        raise ReftuneError(f"unknown prompt_format {prompt_format!r}: use one of {list(PROMPT_FORMATS)}")
    if prompt_format == "chat" and not has_chat_template(tokenizer):
        raise ReftuneError("prompt_format chat: this model's tokenizer has no chat template; use plain (or auto)")
    chat = prompt_format == "chat" or (prompt_format == "auto" and has_chat_template(tokenizer))
    return PromptFormat(tokenizer if chat else None, system_prompt or None, tuple(shots))


def without_leading_bos(tokenizer, text: str) -> str:
    """A rendered chat that starts with BOS, for a tokenizer that adds BOS itself, loses its own copy:
    prompts are tokenized with special tokens, and a second BOS is text the model never saw."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
        return text[len(bos):]
    return text
