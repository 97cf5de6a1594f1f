"""Suggest: a model's CoTs for the open question, cut and checked like every other, kept or edited into
samples journaled with their source. The logic and the routes with a stand-in client; the bad inputs at
the command line (one line each)."""
import json
import re
import socket
import threading

import pytest
from review_inputs import SCRIPT_PAYLOAD, nl_samples, python_samples  # noqa: F401 (fixtures)
from starlette.testclient import TestClient

from reftune.annotate.client import Completion, RequestFailed
from reftune.cli import main
from reftune.errors import ReftuneError
from reftune.review.app import TOKEN_HEADER, create_app
from reftune.review.records import load_collection
from reftune.review.session import Session
from reftune.review.suggest import SuggestFailed, Suggester, open_suggester

TOKEN = "test-token"
WITH_TOKEN = {TOKEN_HEADER: TOKEN}
RIGHT = "10 - 4 = 6\nTherefore, the answer is: 6"
WRONG = "10 - 4 = 7\nTherefore, the answer is: 7"


class StandInClient:
    """Answers like OpenAIClient.complete, from a list of replies (an exception is raised instead)."""

    model, endpoint = "helper", "http://127.0.0.1:9/v1"

    def __init__(self, *replies):
        self.replies, self.prompts, self.lock = list(replies), [], threading.Lock()

    def complete(self, prompt, sampling):
        with self.lock:
            self.prompts.append(prompt)
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return Completion(reply, 10, 5)


def session_with(path, client, k=3) -> Session:
    return Session(load_collection([path]), suggester=Suggester(client, k))


def test_suggestions_are_cut_like_annotates_checked_and_held_for_their_question(nl_samples):
    client = StandInClient(RIGHT + "\n\nQuestion:\nthe model goes on", WRONG, SCRIPT_PAYLOAD)
    session = session_with(nl_samples, client)
    record = session.records[1]
    found = session.suggester.suggest(session.collection.tasks[0], record)
    statuses = {s.text: s.verdict.status for s in found.items}  # the K requests run at once, in any order
    assert statuses == {RIGHT: "correct", WRONG: "wrong_answer", SCRIPT_PAYLOAD: "no_answer"} and not found.failures
    assert found.items[0].source == "helper at http://127.0.0.1:9/v1"
    assert "Ann has 10 pens" in client.prompts[0] and client.prompts[0].startswith("Question:")  # few-shot first
    assert session.suggester.held(record, found.items[0].id) == found.items[0]
    with pytest.raises(ReftuneError, match="no longer held"):
        session.suggester.held(session.records[0], found.items[0].id)  # another question's


def test_failed_requests_are_named_and_none_answered_is_one_message(nl_samples):
    refused = RequestFailed("HTTP 400: the prompt is too long", retryable=False, refused=True)
    session = session_with(nl_samples, StandInClient(refused, RIGHT, RIGHT))
    found = session.suggester.suggest(session.collection.tasks[0], session.records[1])
    assert len(found.items) == 2 and found.failures == ["HTTP 400: the prompt is too long"]
    gone = session_with(nl_samples, StandInClient(RequestFailed("cannot connect (Connection refused)", True)))
    with pytest.raises(SuggestFailed, match="helper at http://127.0.0.1:9/v1 answered cannot connect .* still running"):
        gone.suggester.suggest(gone.collection.tasks[0], gone.records[1])


@pytest.fixture()
def client(nl_samples):
    app = create_app(session_with(nl_samples, StandInClient(RIGHT, WRONG, SCRIPT_PAYLOAD)), TOKEN)
    return TestClient(app)


def suggestion_id(html: str, text: str) -> str:
    """The id of the suggestion card showing `text`."""
    card = next(card for card in html.split('<article class="sample suggestion')[1:] if f">{text}</pre>" in card)
    return re.search(r'id="suggestion-([\w-]+)"', card).group(1)


def test_suggest_shows_the_checked_cots_escaped_and_keep_journals_one_with_its_source(client, nl_samples):
    assert 'hx-post="/record/1/suggest"' in client.get("/record/1").text
    shown = client.post("/record/1/suggest", headers=WITH_TOKEN)
    assert shown.status_code == 200 and shown.text.count('class="sample suggestion') == 3
    assert "<script>window" not in shown.text and "&lt;script&gt;" in shown.text
    first = suggestion_id(shown.text, RIGHT)
    kept = client.post(f"/record/1/suggestion/{first}", headers=WITH_TOKEN)
    assert kept.status_code == 200 and "suggested by helper at http://127.0.0.1:9/v1, kept by local" in kept.text
    assert f'id="suggestion-{first}" hx-swap-oob="true"' in kept.text and "Kept as sample #2" in kept.text
    [line] = (nl_samples.parent / "dev-samples.jsonl.review.jsonl").read_text().splitlines()
    event = json.loads(line)
    assert (event["event"], event["sample"], event["text"], event["status"]) == ("write", 1, RIGHT, "correct")
    assert event["source"] == "helper at http://127.0.0.1:9/v1" and event["reviewer"] == "local"
    again = Session(load_collection([nl_samples]))  # a restart replays it, source and all
    assert again.state.samples(again.records[1])[1].source == "helper at http://127.0.0.1:9/v1"


def test_edit_starts_the_editor_from_a_suggestion_and_saving_marks_it_edited(client, nl_samples):
    shown = client.post("/record/1/suggest", headers=WITH_TOKEN)
    second = suggestion_id(shown.text, WRONG)
    editor = client.get(f"/record/1/write?suggestion={second}")
    assert WRONG in editor.text and f'name="suggestion" value="{second}"' in editor.text
    saved = client.post("/record/1/write", data={"text": RIGHT, "suggestion": second}, headers=WITH_TOKEN)
    assert saved.status_code == 200 and "kept by local" in saved.text and "Kept as sample #2, edited" in saved.text
    event = json.loads((nl_samples.parent / "dev-samples.jsonl.review.jsonl").read_text())
    assert event["source"] == "helper at http://127.0.0.1:9/v1, edited" and event["status"] == "correct"


def test_an_unknown_suggestion_or_no_model_is_one_line_and_the_endpoint_gone_is_a_message(nl_samples, python_samples):
    client = TestClient(create_app(session_with(nl_samples, StandInClient(RIGHT)), TOKEN))
    stale = client.post("/record/1/suggestion/nothing-like-it", headers={**WITH_TOKEN, "HX-Request": "true"})
    assert stale.status_code == 400 and "no longer held" in stale.text and stale.headers["HX-Retarget"] == "#flash"
    alone = TestClient(create_app(Session(load_collection([nl_samples])), TOKEN))
    assert 'class="suggest"' not in alone.get("/record/1").text
    asked = alone.post("/record/1/suggest", headers=WITH_TOKEN)
    assert "no model to ask: start it with --suggest-endpoint" in asked.text
    unreadable = TestClient(create_app(session_with(python_samples, StandInClient(RIGHT)), TOKEN))
    assert "could not be read" in unreadable.post("/record/2/suggest", headers=WITH_TOKEN).text  # a malformed line
    gone = TestClient(create_app(session_with(nl_samples, StandInClient(RequestFailed("cannot connect", True))), TOKEN))
    failed = gone.post("/record/1/suggest", headers={**WITH_TOKEN, "HX-Request": "true"})
    assert failed.status_code == 502 and "is it still running?" in failed.text and "Traceback" not in failed.text
    assert gone.get("/record/1").status_code == 200 and gone.get("/").status_code == 200  # the rest works on


def closed_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def test_a_bad_endpoint_k_or_prompt_file_is_refused_before_anything_is_served(tmp_path):
    with pytest.raises(ReftuneError, match="--suggest-endpoint 'htp:/x': the scheme 'htp' is not http or https"):
        open_suggester("htp:/x", None)
    with pytest.raises(ReftuneError, match=f"endpoint http://127.0.0.1:{(port := closed_port())}/v1: cannot connect"):
        open_suggester(f"http://127.0.0.1:{port}/v1", "m")
    with pytest.raises(ReftuneError, match="--suggest-k must be in 1..16, got 0"):
        open_suggester("http://127.0.0.1:9/v1", None, k=0)
    (tmp_path / "notes.txt").write_text("just some words")
    with pytest.raises(ReftuneError, match="--suggest-prompt-file .* holds no 'Question:'"):
        open_suggester("http://127.0.0.1:9/v1", None, prompt_file=str(tmp_path / "notes.txt"))


@pytest.mark.parametrize("options, words", [
    (["--suggest-endpoint", "127.0.0.1:8000"], "--suggest-endpoint '127.0.0.1:8000'"),
    (["--suggest-endpoint", "http://127.0.0.1:{port}/v1"], "cannot connect"),
    (["--suggest-k", "3"], "go with --suggest-endpoint URL"),
    (["--verifier", "{missing}"], "does not exist"),
    (["--verifier", "{data}"], "is not a folder"),
    (["--verifier", "{folder}"], "is not a verifier (no verifier_head.safetensors): train one with `reftune verifier`"),
])
def test_each_bad_helper_option_is_one_line_at_the_command_line(nl_samples, capsys, options, words):
    values = {"port": closed_port(), "missing": nl_samples.parent / "nowhere", "data": nl_samples,
              "folder": nl_samples.parent}
    args = [option.format(**values) for option in options]
    assert main(["review", str(nl_samples), "--no-browser", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune review: error: ") and words in err and err.count("\n") == 1
