"""How fast is `reftune review` on a big samples file, and how soon does it show what an RL run
appends? Writes a samples file of --records questions (four N-CoT samples each, as `reftune sample`
writes them) and an RL run's rollouts.jsonl in a temporary folder, then measures three things:

1. From process start (`python -m reftune.cli review FILE` in a subprocess, polled over HTTP as a
   browser would, the checkout's modules compiled to bytecode first as an install does): the first page, a filtered page while the file is still being read, and the
   moment every record is read (the command prints it).
2. In-process (the whole file read first, then requests through Starlette's test client: the app's
   own work, no network): each kind of page on the complete index, as before.
3. Appending to a growing rollouts.jsonl of --rollout-steps logged steps (4 questions each) while
   the app runs: a half-written line first (it must not show), then the rest of one logged step
   (two known questions, two new): how long after the append the list shows the new rows.

    {"records", "file_mb", "start_to_first_page_s", "start_filtered_page_s", "start_to_all_read_s",
     "load_s", "first_page_s", ..., "rollout_rows", "partial_line_hidden", "appended_visible_s", ...}

Target: the first page under 1 s after start on 100,000 records; appended rows on
the next list request, without a restart. The *_page_s figures are the first request of each query.

    python benchmarks/review.py [--records 100000] [--rollout-steps 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # `python -m reftune.cli` runs this checkout's reftune
COUNT = re.compile(r"(\d+) of (\d+) records")
LOADING = "still loading"


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


def rollout_row(step: int, number: int, rng: random.Random, marker: str = "") -> str:
    """One logged question of an RL step, as the RL stage appends it (no vote), one JSON line."""
    row = samples_row(number, rng)
    for key in ("vote", "vote_correct", "finished"):
        del row[key]
    row["samples"] = [text + marker for text in row["samples"]]
    return json.dumps({"step": step, **row}) + "\n"


def write_samples(path: Path, records: int) -> None:
    rng = random.Random(0)
    with open(path, "w") as out:
        for number in range(records):
            out.write(json.dumps(samples_row(number, rng)) + "\n")


def child_env() -> dict:
    """The command's environment, with Python's bytecode cache on, as an installed package has it
    (PYTHONDONTWRITEBYTECODE would make every start compile the checkout's modules again)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_checkout() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "reftune")], check=True, env=child_env())


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode("utf-8")


def counts(text: str) -> tuple[int, int]:
    """(records the list matches, records read): the list's "N of M records"."""
    found = COUNT.search(text)
    return int(found.group(1)), int(found.group(2))


class Review:
    """`reftune review PATH` in a subprocess of this checkout, its URL read from what it prints."""

    def __init__(self, path: Path):
        self.started = time.perf_counter()
        command = [sys.executable, "-m", "reftune.cli", "review", str(path), "--no-browser", "--port", "0"]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=child_env())
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line)
            if "review: open " in line:
                self.url = line.split("review: open ")[1].split()[0].rstrip("/")
                break
        else:
            raise SystemExit("review stopped before it listened:\n" + "".join(self.lines))
        self.all_read_s: float | None = None
        threading.Thread(target=self.drain, daemon=True).start()

    def drain(self) -> None:
        """Keep what it prints, and when it says every record is read (no polling: a page asked for
        makes the background reading pause)."""
        for line in self.process.stdout:
            self.lines.append(line)
            if re.match(r"review: \d+ records \(the rest in", line) and self.all_read_s is None:
                self.all_read_s = self.since_start()

    def since_start(self) -> float:
        return round(time.perf_counter() - self.started, 3)

    def poll(self, route: str, done, timeout: float = 120.0) -> tuple[float | None, str]:
        """Seconds since start when GET route first gives a page that done(text) accepts."""
        text, deadline = "", time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                text = get(self.url + route)
                if done(text):
                    return self.since_start(), text
            except OSError:
                pass
            time.sleep(0.02)
        return None, text

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def from_start(path: Path) -> dict:
    """Process start to the first page, a filtered page, and every record read."""
    review = Review(path)
    try:
        first_s, text = review.poll("/", lambda text: True)
        before = time.perf_counter()
        filtered = get(review.url + "/?filter=wrong")
        filtered_s = round(time.perf_counter() - before, 3)
        deadline = time.perf_counter() + 600
        while LOADING in text and review.all_read_s is None and time.perf_counter() < deadline:
            time.sleep(0.05)
        all_read_s = review.all_read_s if LOADING in text else first_s  # read whole before it listened
        return {"start_to_first_page_s": first_s, "first_page_records_read": counts(text)[1],
                "start_filtered_page_s": filtered_s, "filtered_while_loading": LOADING in filtered,
                "start_to_all_read_s": all_read_s}
    finally:
        review.stop()


def in_process(path: Path, records: int) -> dict:
    """The whole file read in-process, then each kind of page on the complete index."""
    from starlette.testclient import TestClient

    from reftune.review.app import TOKEN_HEADER, create_app
    from reftune.review.records import load_collection
    from reftune.review.session import Session

    started = time.perf_counter()
    session = Session(load_collection([path]))
    figures = {"load_s": round(time.perf_counter() - started, 2)}
    client = TestClient(create_app(session, "benchmark"))
    matches = {}
    for name, url in (("first_page_s", "/"), ("filtered_page_s", "/?filter=wrong"),
                      ("searched_page_s", "/?search=buys+17+more"), ("sorted_page_s", "/?sort=-length"),
                      ("last_page_s", "/?filter=no_answer&page=100000")):
        figures[name], text = timed(client, url)
        matches[name.removesuffix("_s")] = counts(text)[0]
    figures["question_view_s"], _ = timed(client, f"/record/{records // 2}")
    figures["charts_page_s"], _ = timed(client, "/stats")  # computed on the first request, then kept
    started = time.perf_counter()
    client.post(f"/record/{records // 2}/sample/0/accept", headers={TOKEN_HEADER: "benchmark"})
    figures["action_s"] = round(time.perf_counter() - started, 3)
    return {**figures, "matches": matches}


def timed(client, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = client.get(url)
    seconds = time.perf_counter() - started
    assert response.status_code == 200, (url, response.status_code)
    return round(seconds, 3), response.text


def appended(folder: Path, steps: int) -> dict:
    """A rollouts.jsonl of `steps` logged steps x 4 questions; one more step appended while the app
    runs, first half a line, then the rest: when does the list show it?"""
    path, rng = folder / "rollouts.jsonl", random.Random(1)
    with open(path, "w") as out:
        for step in range(steps):
            out.writelines(rollout_row(step * 10, step * 4 + n, rng) for n in range(4))
    marker = " (logged late)"
    rows = [rollout_row(steps * 10, number, rng, marker) for number in (0, 1, steps * 4, steps * 4 + 1)]
    review = Review(path)
    try:
        review.poll("/", lambda text: LOADING not in text)
        search = "/?search=" + urllib.request.quote(marker.strip())
        with open(path, "a") as out:
            out.write(rows[0][:len(rows[0]) // 2])
        partial = counts(get(review.url + search))[0]
        with open(path, "a") as out:
            out.write(rows[0][len(rows[0]) // 2:] + "".join(rows[1:]))
        written = time.perf_counter()
        seen_at, text = review.poll(search, lambda text: counts(text)[0] == 4, timeout=10)
        visible = None if seen_at is None else round(review.started + seen_at - written, 3)
        return {"rollout_rows": steps * 4, "rollout_mb": round(path.stat().st_size / 2**20, 1),
                "partial_line_hidden": partial == 0, "appended_visible_s": visible,
                "appended_matches": counts(text)[0]}
    finally:
        review.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rollout-steps", type=int, default=1000, help="logged steps of 4 questions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test-samples.jsonl"
        write_samples(path, args.records)
        compile_checkout()
        figures = {"records": args.records, "file_mb": round(path.stat().st_size / 2**20, 1), **from_start(path)}
        figures.update(in_process(path, args.records))
        (Path(folder) / "run").mkdir()
        figures.update(appended(Path(folder) / "run", args.rollout_steps))
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
