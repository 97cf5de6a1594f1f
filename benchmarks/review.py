"""How fast is `reftune review` on a big samples file? Writes a samples file of --records questions
(four N-CoT samples each, as `reftune sample` writes them) in a temporary folder, loads it as the
command does, then times requests through Starlette's test client (in-process: the app's own work,
no network):

    {"records", "file_mb", "load_s", "first_page_s", "filtered_page_s", "searched_page_s",
     "sorted_page_s", "last_page_s", "question_view_s", "charts_page_s", "action_s", "matches": {...}}

The *_page_s figures are the first request of each query (nothing cached for it yet). Target
(review issue): first page and a filtered page under 1 s each on 100,000 records.

    python benchmarks/review.py [--records 100000]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path


def samples_row(number: int, rng: random.Random) -> dict:
    """One question with four samples: right, wrong or without an answer, in varying mixes."""
    a, b = rng.randint(2, 500), rng.randint(2, 500)
    gold = float(a + b)
    answers = [rng.choice([gold, gold, gold + rng.randint(1, 9), None]) for _ in range(4)]
    samples = [f"We add {a} and {b}.\n{a} + {b} = {int(answer)}\nTherefore, the answer is: {int(answer)}"
               if answer is not None else f"We add {a} and {b} and get a big number." for answer in answers]
    correct = [answer == gold for answer in answers]
    votes = [answer for answer in answers if answer is not None]
    vote = max(votes, key=votes.count) if votes else None
    return {"id": f"gsm8k_{number}", "question": f"Ann has {a} apples and buys {b} more. How many apples has she?",
            "gold": gold, "samples": samples, "answers": answers,
            "rewards": [1.0 if ok else (0.1 if answer is not None else 0.0) for ok, answer in zip(correct, answers)],
            "correct": correct, "finished": [True] * 4, "vote": vote, "vote_correct": vote == gold}


def timed(client, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = client.get(url)
    seconds = time.perf_counter() - started
    assert response.status_code == 200, (url, response.status_code)
    return round(seconds, 3), response.text


def main() -> None:
    from starlette.testclient import TestClient

    from reftune.review.app import TOKEN_HEADER, create_app
    from reftune.review.records import load_collection
    from reftune.review.session import Session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test-samples.jsonl"
        with open(path, "w") as out:
            for number in range(args.records):
                out.write(json.dumps(samples_row(number, rng)) + "\n")
        started = time.perf_counter()
        session = Session(load_collection([path]))
        load_s = round(time.perf_counter() - started, 2)
        client = TestClient(create_app(session, "benchmark"))
        figures = {"records": args.records, "file_mb": round(path.stat().st_size / 2**20, 1), "load_s": load_s}
        matches = {}
        for name, url in (("first_page_s", "/"), ("filtered_page_s", "/?filter=wrong"),
                          ("searched_page_s", "/?search=buys+17+more"), ("sorted_page_s", "/?sort=-length"),
                          ("last_page_s", "/?filter=no_answer&page=100000")):
            figures[name], text = timed(client, url)
            matches[name.removesuffix("_s")] = int(re.search(r"(\d+) of \d+ records", text).group(1))
        figures["question_view_s"], _ = timed(client, f"/record/{args.records // 2}")
        figures["charts_page_s"], _ = timed(client, "/stats")  # computed on the first request, then kept
        started = time.perf_counter()
        client.post(f"/record/{args.records // 2}/sample/0/accept", headers={TOKEN_HEADER: "benchmark"})
        figures["action_s"] = round(time.perf_counter() - started, 3)
        print(json.dumps({**figures, "matches": matches}, indent=1))


if __name__ == "__main__":
    main()
