"""Few-shot prompts for sampling CoTs, as a plain prompt or as chat messages, and reading the CoT out
of what a model wrote back.

A prompt file holds examples in the authors' layout, "Question:\\n...\\nAnswer reasoning:\\n...", one
blank line between them; the question to answer follows in the same layout (the task's own prompt).
Built-in files live beside this module as `<task>-<style>.txt`; a task without one gets GSM8K's.

>>> two = "Question:\\nq1?\\nAnswer reasoning:\\n1 + 1 = 2\\n\\nQuestion:\\nq2?\\nAnswer reasoning:\\nr2\\n"
>>> blocks = parse_examples(two)
>>> [(block.question, block.reasoning) for block in blocks]
[('q1?', '1 + 1 = 2'), ('q2?', 'r2')]
>>> cut_completion("7 + 2 = 9\\nTherefore, the answer is: 9\\n\\nQuestion:\\nnext one")
'7 + 2 = 9\\nTherefore, the answer is: 9'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reftune.errors import ReftuneError
from reftune.tasks.answers import ANSWER_TRIGGER

PROMPTS_DIR = Path(__file__).parent / "prompts"
STOP = ["\nQuestion:"]  # a model that goes on writes the next example's question
_EXAMPLE = re.compile(r"Question:\n(.*?)\nAnswer reasoning:\n(.*?)(?=\n\s*\nQuestion:\n|\Z)", re.DOTALL)
SYSTEM = {
    "nl": f"Solve the problem step by step, writing out each calculation, and end with '{ANSWER_TRIGGER} N'.",
    "python": "Write a Python function solution() that computes the answer step by step with one named "
              "variable per step and returns it, in the style of the examples. Write only the function.",
}


@dataclass(frozen=True)
class FewShotExample:
    question: str
    reasoning: str  # the CoT (with its answer line) or the program


def default_prompt_file(task_name: str, style: str) -> Path:
    own = PROMPTS_DIR / f"{task_name}-{style}.txt"
    return own if own.exists() else PROMPTS_DIR / f"gsm8k-{style}.txt"


def read_few_shot(task_name: str, style: str, prompt_file: str | None, option: str = "--prompt-file") -> str:
    """The few-shot block: the file's text with one blank line after it, or "" for an empty file.
    option: the command-line option that named the file, for the messages."""
    path = Path(prompt_file) if prompt_file else default_prompt_file(task_name, style)
    if path.exists() and not path.is_file():  # a folder, or a device such as /dev/zero that never ends
        raise ReftuneError(f"{option} {path} is not a file: give a text file of few-shot examples")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReftuneError(f"cannot read {option} {path}: {exc}") from None
    if text and not parse_examples(text):
        raise ReftuneError(f"{option} {path} holds no 'Question:' / 'Answer reasoning:' examples; write "
                           f"each as 'Question:\\n...\\nAnswer reasoning:\\n...', a blank line between them")
    return text + "\n\n" if text else ""


def parse_examples(few_shot: str) -> list[FewShotExample]:
    return [FewShotExample(m.group(1).strip(), m.group(2).strip()) for m in _EXAMPLE.finditer(few_shot)]


def completion_prompt(few_shot: str, question_prompt: str) -> str:
    """The plain prompt: the examples, then the task's own prompt for the question."""
    return few_shot + question_prompt


def chat_messages(few_shot: str, style: str, question: str) -> list[dict]:
    """The same examples as chat turns: a system line, then user question / assistant CoT pairs."""
    messages = [{"role": "system", "content": SYSTEM[style]}]
    for example in parse_examples(few_shot):
        messages += [{"role": "user", "content": example.question},
                     {"role": "assistant", "content": example.reasoning}]
    return messages + [{"role": "user", "content": question}]


def cut_completion(text: str) -> str:
    """The CoT a completion holds: up to where the model starts another example; code fences removed."""
    for stop in STOP:
        text = text.split(stop)[0]
    text = re.sub(r"^\s*```(?:python)?\s*\n", "", text)
    return re.sub(r"\n```\s*$", "", text.rstrip()).strip()


def stored_cot(style: str, cot: str) -> str:
    """The answer_cot written to the training file. N-CoT: the reasoning before the last answer line,
    since the task's SFT target adds the answer line itself; P-CoT: the program."""
    if style == "python":
        return cot
    matches = list(re.finditer(r"(?:Therefore,\s*)?the answer is", cot, re.IGNORECASE))
    return cot[: matches[-1].start()].rstrip() if matches else cot
