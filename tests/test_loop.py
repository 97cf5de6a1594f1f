"""The whole loop of docs/loop.md, command by command through `reftune.cli.main` as a user types it,
on twelve GSM8K training questions and the tiny model: annotate -> review (accept, correct, write)
-> export -> sft -> rl -> eval -> review the model's wrong answers -> export the corrections -> sft
again. Each command reads what the one before wrote; the review's actions go through its HTTP
routes (Starlette's test client), as the browser sends them."""
import json

import pytest
from starlette.testclient import TestClient

from reftune.cli import main
from reftune.review.app import TOKEN_HEADER, create_app
from reftune.review.records import load_collection
from reftune.review.session import Session

pytestmark = pytest.mark.slow

TOKEN = "loop"
FIRST_LINE, LAST_LINE = 161, 172  # GSM8K train lines holding two rationales with a wrong step (Janet, Silvia)
SILVIA_SLIP = "6*2.5 = $"          # Silvia's rationale states 6*2.5 = 18; the fix says 6*3
TINY = ["--model", "tiny", "--tiny-hidden-size", "32", "--tiny-layers", "1"]
RUN = ["--task", "gsm8k", "--no-progress", "--report-to", "jsonl"]
# the last two questions of each training file held out for dev, as docs/loop.md holds out twenty
TRAIN = [*RUN, "--train-split", "train[:-2]", "--dev-split", "train[-2:]", "--eval-max-new-tokens", "16"]


def review(path) -> tuple[TestClient, Session]:
    """The app over one input, as `reftune review PATH` serves it."""
    session = Session(load_collection([path]))
    return TestClient(create_app(session, TOKEN)), session


def post(client: TestClient, url: str, **form) -> str:
    response = client.post(url, data=form, headers={TOKEN_HEADER: TOKEN})
    assert response.status_code == 200, (url, response.text[:300])
    return response.text


def export(client: TestClient, written) -> list[dict]:
    """Export, and the training rows it wrote, read as `reftune sft --data` will read them."""
    assert "Export" in client.get("/").text
    post(client, "/export")
    return json.loads(written.read_text())


def review_annotations(folder) -> list[dict]:
    """Accept annotate's CoTs of the first three questions, correct Silvia's rejected rationale (its
    wrong step fixed), write a second CoT for the first question by hand; export."""
    client, session = review(folder)
    for record in session.records[:3]:
        assert "correct" in post(client, f"/record/{record.index}/sample/0/accept")
    silvia = next(r for r in session.records if any(SILVIA_SLIP in s.text for s in r.samples))
    slip = next(n for n, s in enumerate(silvia.samples) if SILVIA_SLIP in s.text)
    fixed = silvia.samples[slip].text.replace(SILVIA_SLIP, "6*3 = $")
    assert "correct" in post(client, f"/record/{silvia.index}/sample/{slip}/edit", text=fixed, base="0")
    first = session.records[0]
    by_hand = f"{first.question.split('.')[0]}.\nTherefore, the answer is: {first.gold:g}"
    post(client, f"/record/{first.index}/write", text=by_hand)
    return export(client, folder / "annotated.reviewed.json")


def correct_wrong_answers(samples, golds: dict) -> list[dict]:
    """The eval's wrong answers: each question's first sample replaced by its reviewed CoT; export."""
    client, session = review(samples)
    assert session.collection.sources[0].kind == "samples" and len(session.records) == 10
    wrong = [r for r in session.records if r.outcome != "correct" and r.id in golds]
    assert wrong, "the tiny model got every question right: nothing to correct"
    for record in wrong:
        post(client, f"/record/{record.index}/sample/0/edit", text=golds[record.id], base="0")
    return export(client, samples.with_name(samples.name.replace(".jsonl", ".reviewed.json")))


def summary(folder) -> dict:
    return json.loads((folder / "summary.json").read_text())


def annotate(tmp_path, shared_data):
    """Twelve GSM8K training questions annotated from their own rationales: ten verified CoTs, two
    rejected for a wrong step; the folder opens in the review as one input."""
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[FIRST_LINE - 1:LAST_LINE]
    (tmp_path / "gsm8k-slice.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["annotate", "--task", "gsm8k", "--source", "notes", "--data", str(tmp_path / "gsm8k-slice.jsonl"),
                 "--output", str(tmp_path / "data"), "--no-progress"]) == 0
    _, session = review(tmp_path / "data")
    assert session.collection.sources[0].kind == "annotate" and len(session.records) == 12
    return tmp_path / "data"


def train_on(reviewed: list[dict], data, tmp_path):
    """sft on the export, then rl from the sft model on the same questions (its rollouts open in the review)."""
    assert main(["sft", *TRAIN, *TINY, "--data", str(data), "--epochs", "2", "--batch-size", "3",
                 "--micro-batch-size", "3", "--learning-rate", "3e-3", "--output", str(tmp_path / "sft")]) == 0
    assert summary(tmp_path / "sft")["train_examples"] == len(reviewed) - 2
    assert main(["rl", *TRAIN, "--model", str(tmp_path / "sft" / "best"), "--data", str(data), "--max-steps", "2",
                 "--questions-per-step", "2", "--num-samples-per-question", "2", "--max-new-tokens", "16",
                 "--eval-every", "2", "--log-rollouts-every", "1", "--output", str(tmp_path / "rl")]) == 0
    assert summary(tmp_path / "rl")["steps"] == 2
    _, session = review(tmp_path / "rl" / "rollouts.jsonl")
    assert session.collection.sources[0].kind == "rollouts" and session.records
    return tmp_path / "rl" / "best"


def test_the_loop_runs_command_by_command_and_each_hand_off_loads(tmp_path, shared_data):
    # 1. annotate, 2. review (accept, correct, write) and export
    folder = annotate(tmp_path, shared_data)
    reviewed = review_annotations(folder)
    assert len(reviewed) == 5 and sum(row["item_id"].endswith("-cot2") for row in reviewed) == 1
    # 3. sft on the export, 4. rl from the sft model
    model = train_on(reviewed, folder / "annotated.reviewed.json", tmp_path)
    # 5. eval the RL model on training questions (never test: its answers are about to be corrected);
    # a slice's samples file is named by its split alone
    assert main(["eval", *RUN, "--model", str(model), "--data", str(tmp_path / "gsm8k-slice.jsonl"),
                 "--split", "train[:-2]", "--max-new-tokens", "16", "--output", str(tmp_path / "eval")]) == 0
    # 6. review its wrong answers: each corrected to the reviewed CoT; export the corrections
    golds = {row["item_id"]: row["answer_cot"] + f"\nTherefore, the answer is: {row['answer_value']}"
             for row in reviewed if "-cot" not in row["item_id"]}
    corrections = correct_wrong_answers(tmp_path / "eval" / "train-samples.jsonl", golds)
    assert corrections and all(row["item_id"] in golds for row in corrections)
    # 7. sft again, from the RL model, on the corrections
    assert main(["sft", *TRAIN, "--model", str(model), "--data", str(tmp_path / "eval" / "train-samples.reviewed.json"),
                 "--epochs", "1", "--batch-size", "2", "--micro-batch-size", "2",
                 "--output", str(tmp_path / "sft-again")]) == 0
    assert summary(tmp_path / "sft-again")["train_examples"] == len(corrections) - 2
