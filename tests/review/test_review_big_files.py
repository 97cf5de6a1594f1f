"""Big and growing inputs: a samples file is shown from its first rows while the rest is read a piece
at a time, and the rows an RL run appends to rollouts.jsonl show on the next list request."""
import json

from review_inputs import samples_row, write_jsonl
from starlette.testclient import TestClient

from reftune.review.app import TOKEN_HEADER, create_app
from reftune.review.journal import Event
from reftune.review.records import load_collection, open_collection
from reftune.review.session import Session
from reftune.review.tail import Tail
from reftune.review.team import Team, assign

TOKEN = "test-token"


def nl_row(number: int, record_id: str | None = None) -> dict:
    """A question whose first sample is right when the number is even."""
    answer = float(number + 2) if number % 2 == 0 else float(number + 3)
    text = f"{number} + 2 = {answer:g}\nTherefore, the answer is: {answer:g}"
    return samples_row(record_id or f"gsm8k_{number}", f"What is {number} + 2?", float(number + 2), [text], [answer])


def big_samples(tmp_path, rows: int = 300):
    """A samples file with a malformed line and a repeated id among its rows."""
    records = [nl_row(n) for n in range(rows)]
    records[7] = nl_row(7, record_id="gsm8k_3")
    return write_jsonl(tmp_path / "test-samples.jsonl", records, bad_line='{"id": "gsm8k_x", oops')


def rollout_line(step: int, number: int, note: str = "") -> str:
    row = nl_row(number)
    row["samples"] = [text + note for text in row["samples"]]
    return json.dumps({"step": step, **{k: v for k, v in row.items() if k not in ("vote", "vote_correct")}}) + "\n"


def test_a_file_read_in_pieces_gives_the_records_read_whole(tmp_path):
    path = big_samples(tmp_path)
    session = Session(open_collection([path], first_bytes=2_000))
    assert 0 < len(session.records) < 50 and session.loading is not None
    while session.read_more(3_000):
        pass
    session.read_all()  # nothing left: it says so
    whole = load_collection([path])
    assert session.loading is None and [repr(r) for r in session.records] == [repr(r) for r in whole.records]
    assert session.records[8].id == "gsm8k_3#2" and session.records[2].error.startswith("not valid JSON")
    assert session.index.count == len(whole.records) == 301


def test_the_first_page_shows_while_the_rest_is_read_and_export_waits(tmp_path):
    session = Session(open_collection([big_samples(tmp_path)], first_bytes=2_000))
    client = TestClient(create_app(session, TOKEN))
    first = client.get("/")
    assert first.status_code == 200 and "gsm8k_0" in first.text and "still loading" in first.text
    assert "still loading" in client.get("/?filter=wrong").text and "still loading" in client.get("/stats").text
    refused = client.post("/export", headers={TOKEN_HEADER: TOKEN})
    assert refused.status_code == 400 and "still loading the inputs" in refused.text
    session.read_all()
    done = client.get("/")
    assert "still loading" not in done.text and "301 of 301 records" in done.text
    assert client.post("/export", headers={TOKEN_HEADER: TOKEN}).status_code == 200


def test_the_background_reading_ends_with_every_record(tmp_path):
    session = Session(open_collection([big_samples(tmp_path)], first_bytes=2_000))
    finished = []
    session.read_in_background(lambda: finished.append(len(session.records))).join(timeout=60)
    assert finished == [301] and session.loading is None and not session.reading_failed


def test_decisions_on_records_not_read_yet_apply_once_they_are_read(tmp_path):
    path = big_samples(tmp_path)
    before = Session(load_collection([path]))
    last = before.records[-1]
    before.state.act(last, 0, Event("accept", last.id, 0))
    session = Session(open_collection([path], first_bytes=2_000))
    assert len(session.records) <= last.index
    session.read_all()
    assert session.state.review(last.index, 0).decision == "accepted" and session.state.reviewed_count() == 1


def test_rows_appended_to_rollouts_show_on_the_next_list_request(tmp_path):
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_text(rollout_line(0, 1) + rollout_line(0, 2))
    client = TestClient(create_app(Session(open_collection([path])), TOKEN))
    assert "2 of 2 records" in client.get("/").text
    late = rollout_line(10, 1, " (logged late)") + rollout_line(10, 3, " (logged late)")
    half = rollout_line(10, 2, " (logged late)")
    with open(path, "a") as out:
        out.write(late + half[:20])  # the RL stage is still writing the last line
    page = client.get("/?search=logged+late")
    assert "2 of 3 records" in page.text and "not valid JSON" not in page.text
    assert "step 10" in client.get("/record/0").text
    with open(path, "a") as out:
        out.write(half[20:])
    assert "3 of 3 records" in client.get("/?search=logged+late").text


def test_a_rewritten_rollouts_file_says_so_and_keeps_what_was_read(tmp_path):
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_text(rollout_line(0, 1) + rollout_line(10, 1) + rollout_line(20, 1))
    client = TestClient(create_app(Session(open_collection([path])), TOKEN))
    path.write_text(rollout_line(0, 1))  # a resumed run cuts its log back to its checkpoint
    page = client.get("/")
    assert "was rewritten" in page.text and "restart the review" in page.text and "1 of 1 records" in page.text


def test_a_last_line_without_its_newline_is_a_row(tmp_path):
    path = tmp_path / "test-samples.jsonl"
    path.write_text("\n".join(json.dumps(nl_row(n)) for n in range(3)))
    assert [r.id for r in load_collection([path]).records] == ["gsm8k_0", "gsm8k_1", "gsm8k_2"]


def test_a_rollouts_question_with_a_cot_written_by_hand_keeps_its_numbers(tmp_path):
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_text(rollout_line(0, 1))
    session = Session(open_collection([path]))
    record = session.records[0]
    session.state.act(record, 0, Event("write", record.id, 0, text="1 + 2 = 3\nTherefore, the answer is: 3"))
    with open(path, "a") as out:
        out.write(rollout_line(10, 1))
    session.catch_up()
    assert len(session.state.samples(session.records[0])) == 2 and "written by hand" in session.collection.problems[0]


def test_a_file_that_ended_without_a_newline_grows_on(tmp_path):
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_text(rollout_line(0, 1).rstrip("\n"))  # the last row whole, its newline not written
    session = Session(open_collection([path]))
    for line in ("\n" + rollout_line(10, 2), rollout_line(20, 3)):
        with open(path, "a") as out:
            out.write(line)
        session.catch_up()
    assert [r.id for r in session.records] == ["gsm8k_1", "gsm8k_2", "gsm8k_3"] and not session.collection.problems


def test_the_newline_of_a_line_taken_whole_counts_as_read(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(b'{"a": 1}')
    tail = Tail(path)
    found = [tail.read()]
    for more in (b"\n", b'{"b": 2}\n'):  # shorter than the mark: the newline must be in it
        with open(path, "ab") as out:
            out.write(more)
        found.append(tail.read())
    assert found == [[(1, b'{"a": 1}')], [], [(2, b'{"b": 2}')]] and not tail.rewritten


def test_queues_of_records_read_later_are_those_of_the_whole_file():
    team = Team(("alice", "bob", "carol"), overlap=2)
    grown = assign(team, 70, assign(team, 25, assign(team, 3)))
    assert grown == assign(team, 70)
