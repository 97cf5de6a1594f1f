"""Suggest against a real `reftune serve` process (the tiny model, random weights: the path is what is
checked, not the CoTs' quality), through the app's routes, and the endpoint going away mid-session."""
import json
import re

import pytest
from served_model import arithmetic_questions, start_tiny_endpoint, stop
from starlette.testclient import TestClient

from reftune.cli import main
from reftune.review.app import TOKEN_HEADER, create_app
from reftune.review.records import load_collection
from reftune.review.session import Session
from reftune.review.suggest import open_suggester

pytestmark = pytest.mark.slow
WITH_TOKEN = {TOKEN_HEADER: "test-token", "HX-Request": "true"}


@pytest.fixture(scope="module")
def endpoint():
    """One server for the module; the last test stops it."""
    process, url = start_tiny_endpoint()
    yield process, url
    stop(process)


def test_a_model_the_endpoint_does_not_serve_is_one_line(endpoint, tmp_path, capsys):
    _, url = endpoint
    data, _ = arithmetic_questions(tmp_path)
    assert main(["review", str(data), "--no-browser", "--suggest-endpoint", url, "--suggest-model", "gpt-4"]) == 2
    err = capsys.readouterr().err
    assert err == f"reftune review: error: --suggest-model 'gpt-4': endpoint {url} serves ['tiny']\n"


def test_suggest_asks_the_served_model_keeps_one_and_survives_the_endpoint_going_away(endpoint, tmp_path):
    process, url = endpoint
    data, zero_shot = arithmetic_questions(tmp_path)
    suggester = open_suggester(url, None, 3, str(zero_shot))
    assert suggester.client.model == "tiny" and suggester.source == f"tiny at {url}"  # the one model it serves
    client = TestClient(create_app(Session(load_collection([data]), suggester=suggester), "test-token"))
    assert "it has none" in client.get("/record/0").text

    shown = client.post("/record/0/suggest", headers=WITH_TOKEN)
    assert shown.status_code == 200 and shown.text.count('class="sample suggestion') == 3
    assert "failed" not in shown.text  # every request answered
    first = re.search(r'id="suggestion-([\w-]+)"', shown.text).group(1)
    kept = client.post(f"/record/0/suggestion/{first}", headers=WITH_TOKEN)
    assert kept.status_code == 200 and f"suggested by tiny at {url}, kept by local" in kept.text
    [event] = [json.loads(line) for line in (tmp_path / "questions.json.review.jsonl").read_text().splitlines()]
    assert event["event"] == "write" and event["source"] == f"tiny at {url}" and event["status"]

    stop(process)  # the model goes away mid-session (this module's last test)
    gone = client.post("/record/0/suggest", headers=WITH_TOKEN)
    assert gone.status_code == 502 and "cannot connect" in gone.text and "is it still running?" in gone.text
    assert client.get("/record/0").status_code == 200 and "kept by local" in client.get("/record/0").text
