"""Export: accepted and edited CoTs as a ReFT file the SFT loader reads, and a CSV of decisions."""
import csv
import json

from review_inputs import RIGHT_PROGRAM
from review_inputs import nl_samples, python_samples  # noqa: F401 (fixtures)

from reftune.review.export import export_source
from reftune.review.journal import Event
from reftune.review.records import load_collection
from reftune.review.state import ReviewState
from reftune.rewards import score_completions
from reftune.tasks import get_task


def test_export_of_an_edited_program_loads_with_the_sft_loader_and_scores_right(python_samples):
    collection = load_collection([python_samples])
    state = ReviewState(collection)
    wrong, solved = collection.records[0], collection.records[1]
    state.act(wrong, 0, Event("edit", wrong.id, 0, text=RIGHT_PROGRAM, base=0, status="correct", answer=7.0))
    state.act(solved, 0, Event("accept", solved.id, 0))
    state.act(solved, 1, Event("reject", solved.id, 1))
    state.act(solved, 1, Event("flag", solved.id, 1))
    counts = export_source(collection.sources[0], list(collection.records), state.record_reviews, collection.tasks[0])
    assert (counts.rows, counts.questions, counts.accepted, counts.edited, counts.rejected, counts.flagged) == \
        (2, 2, 1, 1, 1, 1)
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
    collection = load_collection([nl_samples])
    state = ReviewState(collection)
    record = collection.records[0]
    state.act(record, 0, Event("accept", record.id, 0))
    state.act(record, 1, Event("edit", record.id, 1, text="2 + 3 = 5\nTherefore, the answer is: 5", base=0))
    counts = export_source(collection.sources[0], list(collection.records), state.record_reviews, collection.tasks[0])
    rows = json.loads(open(counts.training_file).read())
    assert [(r["item_id"], r["answer_cot"], r["answer_value"]) for r in rows] == [
        ("gsm8k_1", "2 + 3 = 5", "5"), ("gsm8k_1-cot2", "2 + 3 = 5", "5")]
    task = get_task("gsm8k", style="nl")
    examples = task.load("train", counts.training_file)
    assert task.target(examples[0]) == "2 + 3 = 5\nTherefore, the answer is: 5"


def test_export_with_nothing_accepted_writes_an_empty_but_valid_file(nl_samples):
    collection = load_collection([nl_samples])
    counts = export_source(collection.sources[0], list(collection.records), ReviewState(collection).record_reviews,
                           collection.tasks[0])
    assert counts.rows == 0 and json.loads(open(counts.training_file).read()) == []
    assert not list(nl_samples.parent.glob(".*.tmp"))  # the temporary names were renamed away
