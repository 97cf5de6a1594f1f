"""A team's review as plain Python (no server): queues, settled export, disagreements, agreement,
and CoTs written by hand."""
import csv
import json

import pytest
from review_inputs import RIGHT_PROGRAM, WRONG_PROGRAM, samples_row, write_jsonl
from review_inputs import nl_samples, python_samples  # noqa: F401 (fixtures)

from reftune.review.checking import check_cot
from reftune.review.journal import Event
from reftune.review.pages import list_page, progress, record_page, stats_page
from reftune.review.query import Query
from reftune.review.records import load_collection
from reftune.review.session import NotYours, Session
from reftune.review.team import Team
from reftune.tasks import get_task

RIGHT_NL = "2 + 3 = 5\nTherefore, the answer is: 5"


def nl_rows(count: int) -> list[dict]:
    """`count` gsm8k questions with two samples each: right, then wrong."""
    return [samples_row(f"gsm8k_{n}", f"Tom has 2 apples and buys 3 ({n}). How many?", 5.0,
                        [RIGHT_NL, "2 + 3 = 6\nTherefore, the answer is: 6"], [5.0, 6.0]) for n in range(count)]


def decide(session: Session, index: int, number: int, action: str, reviewer: str) -> None:
    record = session.records[index]
    session.state.act(record, number, Event(action, record.id, number, reviewer=reviewer))


def test_each_reviewer_lists_only_their_queue_and_cannot_open_the_others(tmp_path):
    session = Session(load_collection([write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(6))]),
                      team=Team(("alice", "bob")))
    alice = [row.record.index for row in list_page(session, Query(), "alice")["rows"]]
    bob = [row.record.index for row in list_page(session, Query(), "bob")["rows"]]
    assert alice == [0, 2, 4] and bob == [1, 3, 5]
    assert progress(session, "alice")["total"] == 3
    session.check_queue(session.records[0], "alice")
    with pytest.raises(NotYours, match="record 1 is in another reviewer's queue"):
        session.check_queue(session.records[1], "alice")
    decide(session, 0, 0, "accept", "alice")
    assert progress(session, "alice")["reviewed"] == 1 and progress(session, "bob")["reviewed"] == 0
    assert [r.record.index for r in list_page(session, Query("unreviewed"), "alice")["rows"]] == [2, 4]


def test_export_takes_agreed_and_adjudicated_decisions_and_counts_each_kind(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(4))
    team = Team(("alice", "bob", "carol"), overlap=3, adjudicator="carol")
    session = Session(load_collection([data]), team=team)
    for name in ("alice", "bob"):
        decide(session, 0, 0, "accept", name)   # agreed: accepted
        decide(session, 1, 1, "reject", name)   # agreed: rejected
    decide(session, 2, 0, "accept", "alice")    # a disagreement the adjudicator settles
    decide(session, 2, 0, "reject", "bob")
    decide(session, 3, 0, "accept", "alice")    # a disagreement nobody settles
    decide(session, 3, 0, "reject", "bob")
    assert [(d.record.id, d.settlement.how) for d in session.disagreements()] == [
        ("gsm8k_2", "unsettled"), ("gsm8k_3", "unsettled")]
    decide_settle = Event("settle", "gsm8k_2", 0, text="accepted", reviewer="carol")
    session.state.act(session.records[2], 0, decide_settle)
    counts, = session.export()
    assert (counts.agreed, counts.adjudicated, counts.majority, counts.unsettled) == (2, 1, 0, 1)
    rows = json.loads(open(counts.training_file).read())
    assert [row["item_id"] for row in rows] == ["gsm8k_0", "gsm8k_2"]
    with open(counts.decisions_file) as out:
        decisions = list(csv.DictReader(out))
    assert {(d["id"], d["reviewer"], d["decision"], d["settled"]) for d in decisions if d["id"] == "gsm8k_2"} == {
        ("gsm8k_2", "alice", "accepted", "accepted (adjudicated)"), ("gsm8k_2", "bob", "rejected", "accepted (adjudicated)")}


def test_export_majority_takes_a_strict_majority_and_leaves_ties_out(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(2))
    session = Session(load_collection([data]), team=Team(("alice", "bob", "carol"), 3, export_majority=True))
    for name, action in (("alice", "accept"), ("bob", "accept"), ("carol", "reject")):
        decide(session, 0, 0, action, name)
    decide(session, 1, 0, "accept", "alice")
    decide(session, 1, 0, "reject", "bob")
    counts, = session.export()
    assert (counts.agreed, counts.majority, counts.unsettled, counts.rows) == (0, 1, 1, 1)


def test_reviewers_own_edits_of_a_sample_they_agree_to_keep_are_exported_once_each(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(1))
    session = Session(load_collection([data]), team=Team(("alice", "bob", "carol"), 3))
    record, task = session.records[0], get_task("gsm8k")
    for name, text in (("alice", "2 + 3 = 5\nTherefore, the answer is: 5"), ("bob", "3 + 2 = 5\nTherefore, the answer is: 5"),
                       ("carol", "2 + 3 = 5\nTherefore, the answer is: 5")):
        verdict = check_cot(task, text, record.gold)
        session.state.act(record, 1, Event("edit", record.id, 1, text=text, base=0, status=verdict.status,
                                           answer=verdict.answer, reviewer=name))
    counts, = session.export()
    rows = json.loads(open(counts.training_file).read())
    assert [(r["item_id"], r["answer_cot"]) for r in rows] == [("gsm8k_0", "2 + 3 = 5"), ("gsm8k_0-cot2", "3 + 2 = 5")]


def test_one_reviewers_export_is_what_it_was_before_teams(python_samples):
    session = Session(load_collection([python_samples]))
    decide(session, 1, 0, "accept", "local")
    counts, = session.export()
    assert (counts.rows, counts.agreed, counts.unsettled) == (1, 1, 0)
    assert session.disagreements() == [] and stats_page(session, 0)["agreement"] is None


def test_agreement_over_the_records_two_reviewers_share(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(4))
    session = Session(load_collection([data]), team=Team(("alice", "bob"), overlap=2))
    plan = {"alice": ["accept", "reject", "accept", "reject", "accept", "reject", "accept", "accept"],
            "bob": ["accept", "reject", "accept", "reject", "accept", "reject", "reject", "reject"]}
    for name, actions in plan.items():
        for n, action in enumerate(actions):
            decide(session, n // 2, n % 2, action, name)
    table = {row.question: row for row in session.agreement(0)}
    # alice: a r a r a r a a; bob: a r a r a r r r -> p_o = 6/8, p_e = (5*3 + 3*5) / 64 = 30/64
    assert table["decision"].statistic == "Cohen's kappa" and table["decision"].items == 8
    assert table["decision"].kappa == pytest.approx((48 - 30) / (64 - 30))
    assert table["is this CoT right"].kappa == pytest.approx(table["decision"].kappa)
    shown = stats_page(session, 0, "alice")
    assert shown["agreement"] and [name for name, _ in shown["reviewers"]] == ["alice", "bob"]


def test_fleiss_kappa_for_three_reviewers_with_overlap_two(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(3))
    session = Session(load_collection([data]), team=Team(("alice", "bob", "carol"), overlap=2))
    for index in range(3):
        for name in session.assignment.reviewers_of(index):
            decide(session, index, 0, "accept", name)
            decide(session, index, 1, "reject" if name != "carol" else "accept", name)
    decision = session.agreement(0)[0]
    assert decision.statistic == "Fleiss' kappa" and decision.items == 6
    # carol shares two records: sample 1 of each is (reject, accept); the other 4 items agree:
    # P_bar = 4/6 = 96/144; of 12 ratings 8 accept, 4 reject -> P_e = (64 + 16) / 144 = 80/144;
    # kappa = (96 - 80) / (144 - 80) = 1/4
    assert decision.kappa == pytest.approx(0.25)


def test_a_written_cot_is_shown_on_its_question_and_exported_like_an_accepted_one(tmp_path):
    data = tmp_path / "train.json"
    data.write_text(json.dumps([{"item_id": "svamp_1", "question": "Jack has 4 apples and buys 3. How many?",
                                 "answer_cot": "", "answer_value": "7"},
                                {"item_id": "svamp_2", "question": "6 pens a box, 2 boxes?",
                                 "answer_cot": WRONG_PROGRAM, "answer_value": "12"}]))
    session = Session(load_collection([data], task="svamp", style="python"))
    empty, wrong = session.records
    assert empty.samples == () and record_page(session, empty, Query())["none_right"]
    assert record_page(session, wrong, Query())["none_right"]
    task = session.collection.tasks[0]
    verdict = check_cot(task, RIGHT_PROGRAM, empty.gold)  # runs in the sandbox
    assert verdict.ok
    written = session.state.act(empty, 0, Event("write", empty.id, 0, text=RIGHT_PROGRAM, status=verdict.status,
                                                answer=verdict.answer, detail=verdict.detail))
    assert written.sample == 0 and not record_page(session, empty, Query())["none_right"]
    counts, = session.export()
    examples = task.load("train", counts.training_file)
    assert [(e.id, e.cot) for e in examples] == [("svamp_1", RIGHT_PROGRAM)]
    assert counts.accepted == 1 and counts.rows == 1
