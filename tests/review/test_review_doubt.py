"""Ordering the records by a verifier's doubt: scored in the background (the pages never wait), the least
trusted first, with the scores `reftune eval --mode rerank` would give. The order's logic with a
stand-in scorer; the real thing with the tiny verifier."""
import json
import re
import threading

import pytest
from review_inputs import nl_samples, python_samples, samples_row  # noqa: F401 (fixtures)
from starlette.testclient import TestClient

from reftune.errors import ReftuneError
from reftune.review.app import create_app
from reftune.review.doubt import Progress, VerifierScores, check_verifier, scored_texts
from reftune.review.records import load_collection, open_collection
from reftune.review.session import Session

TOKEN = "test-token"


def stand_in(scorer):
    """VerifierScores whose model is `scorer`: (prompt, CoT) pairs -> P(correct)."""
    class StandIn(VerifierScores):
        def _load(self):
            return scorer

    return StandIn


def listed_ids(html: str) -> list[str]:
    return re.findall(r'<a class="open" href="/record/\d+[^"]*">([^<]+)</a>', html)


def test_the_least_trusted_sample_orders_its_record_and_unscored_records_come_last(python_samples, nl_samples):
    collection = load_collection([python_samples, nl_samples])
    scores = stand_in(lambda pairs: [0.9 if "6 * 2" in cot or "2 + 3 = 5" in cot else 0.3 if "+" in cot else 0.6
                                     for _, cot in pairs])("unused", collection).start()
    assert scores.wait(30).done and not scores.progress().error
    ids = [collection.records[i].id for i in scores.doubt_order()[1]]
    # gsm8k_1 has a 0.3 sample beside its 0.9 one: its least trusted sample decides; ties keep file order
    assert ids == ["svamp_2", "gsm8k_1", "svamp_1", "svamp_3", "svamp_4", "gsm8k_2", "line 3 of test-samples.jsonl"]
    assert scores.record_score(5) == pytest.approx(0.3) and scores.sample_scores(5) == pytest.approx([0.9, 0.3, 0.6])
    page = TestClient(create_app(Session(collection, verifier=scores), TOKEN)).get("/?sort=doubt")
    assert listed_ids(page.text)[:3] == ["svamp_2", "gsm8k_1", "svamp_1"] and "all 6 records scored" in page.text


def test_the_pages_answer_while_scoring_runs_and_say_how_far_it_has_come(nl_samples):
    release = threading.Event()

    def slow(pairs):
        release.wait(30)
        return [0.5] * len(pairs)

    collection = load_collection([nl_samples])
    scores = stand_in(slow)("unused", collection).start()
    client = TestClient(create_app(Session(collection, verifier=scores), TOKEN))
    try:
        waiting = client.get("/?sort=doubt")  # answered while the scorer is stuck
        assert waiting.status_code == 200 and "0 of 2 records scored so far" in waiting.text
        assert listed_ids(waiting.text) == ["gsm8k_1", "gsm8k_2"]  # file order until scores come
    finally:
        release.set()
    scores.wait(30)
    assert "all 2 records scored" in client.get("/?sort=doubt").text
    assert "verifier 0.50" in client.get("/record/0").text


def test_a_scorer_that_fails_is_a_line_on_the_page_and_the_review_goes_on(nl_samples):
    def broken(pairs):
        raise RuntimeError("out of memory")

    collection = load_collection([nl_samples])
    scores = stand_in(broken)("unused", collection).start()
    scores.wait(30)
    page = TestClient(create_app(Session(collection, verifier=scores), TOKEN)).get("/?sort=doubt")
    assert page.status_code == 200 and "scoring stopped (RuntimeError: out of memory)" in page.text


def test_without_a_verifier_the_doubt_sort_is_not_offered_and_asking_for_it_says_what_to_add(nl_samples):
    client = TestClient(create_app(Session(load_collection([nl_samples])), TOKEN))
    assert 'value="doubt"' not in client.get("/").text
    refused = client.get("/?sort=doubt")
    assert refused.status_code == 400 and "start the review with --verifier FOLDER" in refused.text


def arithmetic_samples(tmp_path, questions: int):
    """A samples file of the first training questions of arithmetic (the tiny verifier's task), each with
    its right CoT and the same CoT off by one."""
    from reftune.tasks import get_task
    from reftune.training.samples import QuestionSamples

    task = get_task("arithmetic")
    rows = []
    for example in task.load("train")[:questions]:
        right = task.target(example)
        wrong = right.replace(task.format_answer(example.answer), task.format_answer(example.answer + 1))
        texts = [right, wrong]
        answers = task.extract_answers(texts)
        rewards = [1.0 if task.is_correct(a, example.answer) else 0.1 for a in answers]
        rows.append(QuestionSamples(example, texts, answers, rewards, [True, True]).to_json(task))
    data = tmp_path / "test-samples.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data


@pytest.mark.slow  # tiny_verifier: a warm-up SFT and a verifier trained on its samples, once per session
def test_the_tiny_verifier_scores_as_eval_reranks_and_orders_the_list(tiny_verifier, tmp_path):
    from reftune.model.heads import load_verifier
    from reftune.training.samples import verifier_scores

    data = arithmetic_samples(tmp_path, 6)
    collection = load_collection([data], task="arithmetic", style="nl")
    with pytest.raises(ReftuneError, match=f"is a `reftune verifier` run folder: name the verifier inside it, "
                                           f"{tiny_verifier}/best"):
        check_verifier(tiny_verifier)
    folder = f"{tiny_verifier}/best"
    check_verifier(folder)
    scores = VerifierScores(folder, collection).start()
    assert scores.wait(300) == Progress(6, 6, "")

    verifier, tokenizer = load_verifier(folder)
    for record in collection.records:  # the same numbers as reftune eval's rerank
        expected = verifier_scores(verifier, tokenizer, scored_texts(collection, record), 8)
        assert scores.sample_scores(record.index) == pytest.approx(expected, abs=1e-4)
    order = scores.doubt_order()[1]
    lowest = [min(scores.sample_scores(i)) for i in order]
    assert lowest == sorted(lowest)
    page = TestClient(create_app(Session(collection, verifier=scores), TOKEN)).get("/?sort=doubt")
    assert listed_ids(page.text) == [collection.records[i].id for i in order]


@pytest.mark.slow  # tiny_verifier, as above
def test_records_read_after_the_first_page_are_scored_and_join_the_doubt_order(tiny_verifier, tmp_path):
    collection = open_collection([arithmetic_samples(tmp_path, 40)], task="arithmetic", style="nl", first_bytes=1_000)
    session = Session(collection, verifier=VerifierScores(f"{tiny_verifier}/best", collection).start())
    first = len(session.records)
    assert 0 < first < 40 and session.verifier.wait(300) == Progress(first, first, "")
    client = TestClient(create_app(session, TOKEN))
    page = client.get("/?sort=doubt")  # the order covers what is read, and says so
    assert f"all {first} records read so far scored" in page.text and "still loading" in page.text
    session.read_in_background().join(60)
    assert session.loading is None and session.verifier.wait(300) == Progress(40, 40, "")
    order = session.doubt_order()[1]
    lowest = [session.verifier.record_score(i) for i in order]
    assert sorted(order) == list(range(40)) and None not in lowest and lowest == sorted(lowest)
    page = client.get("/?sort=doubt")
    assert "all 40 records scored" in page.text and "read so far" not in page.text
    assert listed_ids(page.text) == [session.records[i].id for i in order]


def rollout(step: int, number: int, note: str = "") -> str:
    """A row of an RL run's rollouts.jsonl: question `number`, one sample (`note` marks it)."""
    text = f"{number} + 2 = {number + 2}\nTherefore, the answer is: {number + 2}{note}"
    row = samples_row(f"gsm8k_{number}", f"What is {number} + 2?", float(number + 2), [text], [float(number + 2)])
    return json.dumps({"step": step, **{k: v for k, v in row.items() if k not in ("vote", "vote_correct")}}) + "\n"


def test_a_growing_rollouts_file_is_scored_as_it_grows_and_a_question_that_gains_a_step_again(tmp_path):
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_text(rollout(0, 1) + rollout(0, 2))
    collection = open_collection([path])
    scores = stand_in(lambda pairs: [0.2 if "(late)" in cot else 0.8 for _, cot in pairs])("unused", collection)
    client = TestClient(create_app(Session(collection, verifier=scores.start()), TOKEN))
    assert scores.wait(30) == Progress(2, 2, "")
    with open(path, "a") as out:
        out.write(rollout(10, 2, " (late)") + rollout(10, 3))
    assert "3 of 3 records" in client.get("/").text  # the page reads the new rows, the verifier queues them
    assert scores.wait(30) == Progress(3, 3, "")
    assert scores.sample_scores(1) == pytest.approx([0.8, 0.2])  # gsm8k_2 scored again, with its new step
    page = client.get("/?sort=doubt")
    assert listed_ids(page.text) == ["gsm8k_2", "gsm8k_1", "gsm8k_3"] and "all 3 records scored" in page.text
