"""Export: the kept CoTs that pass the check as a ReFT file the SFT loader reads, and a CSV of
decisions, beside the data and never onto a file the review reads."""
import csv
import json
import os
import stat

import pytest
from review_inputs import RIGHT_PROGRAM, WRONG_PROGRAM, python_rows, write_jsonl
from review_inputs import nl_samples, python_samples  # noqa: F401 (fixtures)

from reftune.review.checking import check_cot
from reftune.review.journal import Event
from reftune.review.pages import sample_view
from reftune.review.records import load_collection
from reftune.review.session import Session
from reftune.scoring.rewards import score_completions
from reftune.tasks import get_task

LOOPING_PROGRAM = "def solution():\n    while True:\n        pass\n    return 7"
IMPORTING_PROGRAM = "def solution():\n    import os\n    result = 4 + 3\n    return result"


def edit(session: Session, record, number: int, text: str):
    """Save an edit as the app does: re-checked, then journaled with its verdict."""
    verdict = check_cot(session.collection.tasks[record.source], text, record.gold)
    session.state.act(record, number, Event("edit", record.id, number, text=text, base=0, status=verdict.status,
                                            answer=verdict.answer, detail=verdict.detail))


def accept(session: Session, record, number: int) -> None:
    session.state.act(record, number, Event("accept", record.id, number))


def test_export_of_an_edited_program_loads_with_the_sft_loader_and_scores_right(python_samples):
    session = Session(load_collection([python_samples]))
    wrong, solved = session.records[0], session.records[1]
    edit(session, wrong, 0, RIGHT_PROGRAM)
    accept(session, solved, 0)
    session.state.act(solved, 1, Event("reject", solved.id, 1))
    session.state.act(solved, 1, Event("flag", solved.id, 1))
    counts, = session.export()
    assert (counts.rows, counts.questions, counts.accepted, counts.edited, counts.rejected, counts.flagged,
            counts.failing) == (2, 2, 1, 1, 1, 1, ())
    task = get_task("svamp", style="python")
    examples = task.load("train", counts.training_file)
    assert [e.id for e in examples] == ["svamp_1", "svamp_2"] and examples[0].cot == RIGHT_PROGRAM
    assert score_completions(task, [task.target(e) for e in examples], [e.answer for e in examples]) == [1.0, 1.0]
    with open(counts.decisions_file) as rows:
        decisions = list(csv.DictReader(rows))
    assert [(d["id"], d["sample"], d["decision"], d["flagged"], d["edited"]) for d in decisions] == [
        ("svamp_1", "0", "", "False", "True"), ("svamp_2", "0", "accepted", "False", "False"),
        ("svamp_2", "1", "rejected", "True", "False")]


def test_nl_export_drops_the_completions_trigger_and_numbers_extra_cots(nl_samples):
    session = Session(load_collection([nl_samples]))
    record = session.records[0]
    accept(session, record, 0)
    session.state.act(record, 1, Event("edit", record.id, 1, text="2 + 3 = 5\nTherefore, the answer is: 5", base=0))
    counts, = session.export()
    rows = json.loads(open(counts.training_file).read())
    assert [(r["item_id"], r["answer_cot"], r["answer_value"]) for r in rows] == [
        ("gsm8k_1", "2 + 3 = 5", "5"), ("gsm8k_1-cot2", "2 + 3 = 5", "5")]  # an edit journaled unchecked: checked now
    task = get_task("gsm8k", style="nl")
    examples = task.load("train", counts.training_file)
    assert task.target(examples[0]) == "2 + 3 = 5\nTherefore, the answer is: 5"


def test_export_with_nothing_accepted_writes_an_empty_but_valid_file(nl_samples):
    session = Session(load_collection([nl_samples]))
    session.state.act(session.records[0], 0, Event("flag", session.records[0].id, 0))
    counts, = session.export()
    assert counts.rows == 0 and json.loads(open(counts.training_file).read()) == []
    assert not list(nl_samples.parent.glob(".*.tmp"))  # the temporary names were renamed away


def test_kept_cots_that_fail_the_check_are_left_out_and_counted(tmp_path):
    """An accepted wrong program, an accepted `import os` one and an edit that loops forever stay out
    of the training file unless --include-failing; the export names each of them."""
    rows = python_rows()
    rows[3] = dict(rows[3], samples=[IMPORTING_PROGRAM])
    session = Session(load_collection([write_jsonl(tmp_path / "test-samples.jsonl", rows)]))
    wrong, solved, broken, importing = session.records
    accept(session, wrong, 0)
    accept(session, solved, 0)
    accept(session, importing, 0)
    edit(session, broken, 0, LOOPING_PROGRAM)
    assert [kept.describe() for kept in session.failing()] == [
        "svamp_1 #1: wrong answer", "svamp_3 #1: timeout", "svamp_4 #1: program error"]
    counts, = session.export()
    exported = json.loads(open(counts.training_file).read())
    assert [row["item_id"] for row in exported] == ["svamp_2"] and counts.rows == 1 and counts.questions == 1
    assert len(counts.failing) == 3 and not counts.failing_included
    task = get_task("svamp", style="python")
    examples = task.load("train", counts.training_file)
    assert score_completions(task, [task.target(e) for e in examples], [e.answer for e in examples]) == [1.0]

    everything = Session(load_collection([tmp_path / "test-samples.jsonl"]), include_failing=True)
    counts, = everything.export()
    assert counts.rows == 4 and counts.failing_included and len(counts.failing) == 3
    assert WRONG_PROGRAM in [row["answer_cot"] for row in json.loads(open(counts.training_file).read())]


def test_the_list_filter_finds_the_records_whose_kept_cots_fail(python_samples):
    from reftune.review.query import Query

    session = Session(load_collection([python_samples]))
    accept(session, session.records[0], 0)  # a wrong program
    accept(session, session.records[1], 0)  # a right one
    assert session.matches(Query("failing")) == [0]
    assert "failing" in session.marks(0) and "failing" not in session.marks(1)


def test_reviewing_an_earlier_export_never_overwrites_it(python_samples):
    session = Session(load_collection([python_samples]))
    accept(session, session.records[1], 0)
    accept(session, session.records[1], 1)
    first, = session.export()
    earlier = open(first.training_file).read()
    assert len(json.loads(earlier)) == 1  # the second sample (6 + 2) fails the check

    again = Session(load_collection([first.training_file], task="svamp", style="python"))
    again.state.act(again.records[0], 0, Event("reject", again.records[0].id, 0))
    second, = again.export()
    assert open(first.training_file).read() == earlier
    assert second.training_file != first.training_file and json.loads(open(second.training_file).read()) == []


def test_two_inputs_with_the_same_stem_export_to_two_files_that_match_the_counts(tmp_path):
    rows = python_rows()
    first = write_jsonl(tmp_path / "run.v1.jsonl", rows[:2])
    second = write_jsonl(tmp_path / "run.v2.jsonl", [rows[1], dict(rows[0], samples=[RIGHT_PROGRAM], answers=[7.0])])
    session = Session(load_collection([first, second]))
    for record in session.records:
        for number, verdict in enumerate(session.verdicts(record)):
            if verdict.ok:
                accept(session, record, number)
    counts = session.export()
    assert [c.rows for c in counts] == [1, 2]
    assert len({c.training_file for c in counts}) == 2 and len({c.decisions_file for c in counts}) == 2
    assert [len(json.loads(open(c.training_file).read())) for c in counts] == [1, 2]
    assert [os.path.basename(c.training_file) for c in counts] == ["run.v1.reviewed.json", "run.v2.reviewed.json"]


def test_an_export_name_that_is_another_input_gets_a_longer_name(tmp_path):
    rows = python_rows()
    data = write_jsonl(tmp_path / "run.jsonl", rows[:2])
    taken = tmp_path / "run.reviewed.json"
    taken.write_text(json.dumps([{"item_id": "svamp_2", "question": "q", "answer_cot": RIGHT_PROGRAM,
                                  "answer_value": "7"}]))
    before = taken.read_bytes()
    session = Session(load_collection([data, taken], task="svamp", style="python"))
    for record in session.records:
        accept(session, record, 0)
    paths = [c.training_file for c in session.export()]
    assert taken.read_bytes() == before and str(taken) not in paths and len(set(paths)) == 2


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_export_files_get_the_mode_the_umask_gives(python_samples):
    session = Session(load_collection([python_samples]))
    accept(session, session.records[1], 0)
    old = os.umask(0o022)
    try:
        counts, = session.export()
    finally:
        os.umask(old)
    for path in (counts.training_file, counts.decisions_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_an_edited_sample_shows_the_reward_of_its_recheck(python_samples):
    session = Session(load_collection([python_samples]))
    wrong = session.records[0]
    assert sample_view(session, wrong, 0).reward == 0.1
    edit(session, wrong, 0, RIGHT_PROGRAM)
    view = sample_view(session, wrong, 0)
    assert (view.status, view.reward) == ("correct", 1.0)
