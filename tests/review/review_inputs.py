"""Review inputs written by hand in the formats the other commands write (imported by the review tests)."""
import json
from pathlib import Path

import pytest

WRONG_PROGRAM = "def solution():\n    apples = 4\n    bought = 3\n    result = apples - bought\n    return result"
RIGHT_PROGRAM = WRONG_PROGRAM.replace("apples - bought", "apples + bought")
BROKEN_PROGRAM = "def solution():\n    result = apples_nobody_defined * 2\n    return result"
SCRIPT_PAYLOAD = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def samples_row(record_id: str, question: str, gold: float, samples: list[str], answers: list,
                **extra) -> dict:
    """A row as `reftune sample` writes it (QuestionSamples.to_json)."""
    correct = [answer is not None and abs(answer - gold) <= 1e-2 for answer in answers]
    row = {"id": record_id, "question": question, "gold": gold, "samples": samples, "answers": answers,
           "rewards": [1.0 if ok else (0.1 if a is not None else 0.0) for ok, a in zip(correct, answers)],
           "correct": correct, "finished": [True] * len(samples)}
    votes = [a for a in answers if a is not None]
    vote = max(votes, key=votes.count) if votes else None
    row.update(vote=vote, vote_correct=vote is not None and abs(vote - gold) <= 1e-2, **extra)
    return row


def python_rows() -> list[dict]:
    """Four SVAMP-like questions sampled in the python style: wrong, right, broken, hostile."""
    return [
        samples_row("svamp_1", "Jack has 4 apples and buys 3 more. How many apples does he have?", 7.0,
                    [WRONG_PROGRAM], [1.0]),
        samples_row("svamp_2", "A box holds 6 pens; how many pens are in 2 boxes?", 12.0,
                    ["def solution():\n    result = 6 * 2\n    return result",
                     "def solution():\n    result = 6 + 2\n    return result"], [12.0, 8.0]),
        samples_row("svamp_3", "Sam reads 5 pages a day for 3 days. How many pages?", 15.0,
                    [BROKEN_PROGRAM], [None]),
        samples_row("svamp_4", "Mia has 9 cards and gives away 2. How many are left?", 7.0,
                    [SCRIPT_PAYLOAD], [None]),
    ]


def write_jsonl(path: Path, rows: list, bad_line: str | None = None) -> Path:
    lines = [json.dumps(row) for row in rows]
    if bad_line is not None:
        lines.insert(2, bad_line)
    path.write_text("\n".join(lines) + "\n")
    return path


# Fixtures (the test modules import them by name): inputs in the formats the other commands write.
@pytest.fixture()
def python_samples(tmp_path) -> Path:
    """test-samples.jsonl with the four python questions and one malformed line among them."""
    return write_jsonl(tmp_path / "test-samples.jsonl", python_rows(), bad_line='{"id": "svamp_9", oops')


@pytest.fixture()
def nl_samples(tmp_path) -> Path:
    rows = [samples_row("gsm8k_1", "Tom has 2 apples and buys 3. How many?", 5.0,
                        ["2 + 3 = 5\nTherefore, the answer is: 5", "2 + 3 = 6\nTherefore, the answer is: 6",
                         "I am not sure."], [5.0, 6.0, None]),
            samples_row("gsm8k_2", "Ann has 10 pens and loses 4. How many are left?", 6.0,
                        ["10 - 4 = 7\nTherefore, the answer is: 7"], [7.0])]
    return write_jsonl(tmp_path / "dev-samples.jsonl", rows)
