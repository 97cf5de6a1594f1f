"""A team's routes through Starlette's test client: private links, queues, the adjudicator's page,
and writing a CoT by hand."""
import json

import pytest
from review_inputs import RIGHT_PROGRAM, SCRIPT_PAYLOAD, WRONG_PROGRAM, samples_row, write_jsonl
from review_inputs import python_samples  # noqa: F401 (fixtures)
from starlette.testclient import TestClient

from reftune.review.app import TOKEN_HEADER, create_app
from reftune.review.records import load_collection
from reftune.review.session import Session
from reftune.review.team import Team

TOKEN = "csrf-token"
WITH_TOKEN = {TOKEN_HEADER: TOKEN}
LINKS = {"alice-secret": "alice", "bob-secret": "bob", "carol-secret": "carol"}


def rows(count: int) -> list[dict]:
    return [samples_row(f"svamp_{n}", f"Jack has 4 apples and buys 3 ({n}). How many?", 7.0,
                        [WRONG_PROGRAM, RIGHT_PROGRAM], [1.0, 7.0]) for n in range(count)]


def team_app(tmp_path, team: Team):
    data = write_jsonl(tmp_path / "test-samples.jsonl", rows(6))
    tokens = {secret: name for secret, name in LINKS.items() if name in team.reviewers}
    return create_app(Session(load_collection([data]), team=team), TOKEN, None, tokens), data


def signed_in(app, name: str) -> TestClient:
    client = TestClient(app)
    secret = next(secret for secret, who in LINKS.items() if who == name)
    assert client.get(f"/?token={secret}").status_code == 200  # the redirect is followed, with the cookie
    return client


def test_without_a_valid_token_every_route_is_forbidden(tmp_path):
    app, data = team_app(tmp_path, Team(("alice", "bob")))
    anonymous = TestClient(app)
    for url in ["/", "/record/0", "/stats", "/static/htmx.min.js", "/disagreements", "/?token=forged", "/?token="]:
        assert anonymous.get(url).status_code == 403, url
    assert anonymous.post("/record/0/sample/0/accept", headers=WITH_TOKEN).status_code == 403
    anonymous.cookies.set("reftune_review_80", "forged")
    assert anonymous.get("/").status_code == 403
    assert not data.with_name("test-samples.jsonl.review.jsonl").exists()


def test_a_link_signs_in_with_a_cookie_and_drops_the_token_from_the_address_and_the_log_line(tmp_path):
    app, _ = team_app(tmp_path, Team(("alice", "bob")))
    seen = []

    async def logged(scope, receive, send):  # what uvicorn's access log reads: the scope after the app
        await app(scope, receive, send)
        seen.append(scope.get("query_string", b""))

    client = TestClient(logged)
    first = client.get("/?filter=wrong&token=alice-secret", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/?filter=wrong"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("reftune_review_80=alice-secret") and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert seen == [b"filter=wrong"]
    page = client.get("/?filter=wrong")
    assert page.status_code == 200 and 'class="who"' in page.text and ">alice<" in page.text
    assert "alice-secret" not in page.text


def test_each_reviewer_lists_their_queue_and_is_refused_the_others(tmp_path):
    app, _ = team_app(tmp_path, Team(("alice", "bob")))
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    listed = alice.get("/").text
    assert "3 of 3 records" in listed and "svamp_0" in listed and "svamp_1<" not in listed
    assert "svamp_1" in bob.get("/").text and "reviewed 0 of 3" in bob.get("/").text
    refused = alice.get("/record/1")
    assert refused.status_code == 403 and "in another reviewer&#39;s queue, not in alice&#39;s" in refused.text
    assert alice.post("/record/1/sample/0/accept", headers=WITH_TOKEN).status_code == 403
    assert alice.post("/record/0/sample/1/accept", headers=WITH_TOKEN).status_code == 200


def test_decisions_are_journaled_under_each_reviewers_name(tmp_path):
    app, data = team_app(tmp_path, Team(("alice", "bob"), overlap=2))
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    assert "mark-accepted" in alice.post("/record/0/sample/0/accept", headers=WITH_TOKEN).text
    assert "mark-rejected" in bob.post("/record/0/sample/0/reject", headers=WITH_TOKEN).text
    assert "mark-rejected" not in alice.get("/record/0").text  # each sees their own decision
    lines = [json.loads(line) for line in data.with_name("test-samples.jsonl.review.jsonl").read_text().splitlines()]
    assert [(line["event"], line["reviewer"]) for line in lines] == [("accept", "alice"), ("reject", "bob")]


def test_the_adjudicator_alone_settles_disagreements_and_export_counts_them(tmp_path):
    app, _ = team_app(tmp_path, Team(("alice", "bob", "carol"), overlap=3, adjudicator="carol"))
    alice, bob, carol = (signed_in(app, name) for name in ("alice", "bob", "carol"))
    for number in (0, 1):
        alice.post(f"/record/0/sample/{number}/accept", headers=WITH_TOKEN)
        bob.post(f"/record/0/sample/{number}/reject", headers=WITH_TOKEN)
    alice.post("/record/0/sample/0/note", data={"note": SCRIPT_PAYLOAD}, headers=WITH_TOKEN)
    assert alice.get("/disagreements").status_code == 403 and "only the adjudicator (carol)" in alice.get("/disagreements").text
    assert 'id="disagreements-link"' in carol.get("/").text and 'id="disagreements-link"' not in alice.get("/").text
    page = carol.get("/disagreements")
    assert page.status_code == 200 and page.text.count('<article class="disagreement') == 2 and "2 not settled yet" in page.text
    assert "<script>window.pwned" not in page.text and "&lt;script&gt;" in page.text  # a note is escaped too
    assert alice.post("/record/0/sample/0/settle", data={"decision": "accepted"}, headers=WITH_TOKEN).status_code == 403
    bad = carol.post("/record/0/sample/0/settle", data={"decision": "maybe"}, headers=WITH_TOKEN)
    assert bad.status_code == 400 and "settle to accepted or rejected" in bad.text
    settled = carol.post("/record/0/sample/1/settle", data={"decision": "accepted"}, headers=WITH_TOKEN)
    assert settled.status_code == 200 and "settled: accepted" in settled.text
    result = carol.post("/export", headers=WITH_TOKEN).text
    assert '<b class="adjudicated">1</b>' in result and '<b class="unsettled">1</b>' in result
    assert '<td class="rows">1</td>' in result


def test_the_stats_page_shows_agreement_for_a_team(tmp_path):
    app, _ = team_app(tmp_path, Team(("alice", "bob"), overlap=2))
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    for number, (a, b) in enumerate([("accept", "accept"), ("reject", "reject")]):
        alice.post(f"/record/0/sample/{number}/{a}", headers=WITH_TOKEN)
        bob.post(f"/record/0/sample/{number}/{b}", headers=WITH_TOKEN)
    page = alice.get("/stats").text
    assert "Agreement between reviewers" in page and "Cohen&#39;s kappa" in page
    assert '<td class="kappa">1.000</td><td class="items">2</td>' in page
    (tmp_path / "split").mkdir()
    split, _ = team_app(tmp_path / "split", Team(("alice", "bob")))  # overlap 1: nothing shared
    assert "nobody shares a record" in signed_in(split, "alice").get("/stats").text


def test_one_person_on_loopback_needs_no_token_and_has_no_disagreements_page(python_samples):
    client = TestClient(create_app(Session(load_collection([python_samples])), TOKEN))
    assert client.get("/").status_code == 200 and 'class="who"' not in client.get("/").text
    refused = client.get("/disagreements")
    assert refused.status_code == 403 and "no adjudicator" in refused.text


def test_writing_a_cot_by_hand_checks_it_live_and_saves_it_as_a_new_sample(python_samples):
    client = TestClient(create_app(Session(load_collection([python_samples])), TOKEN))
    page = client.get("/record/0").text  # svamp_1: its one sample is wrong
    assert "No sample of this question is right" in page and 'class="write"' in page
    form = client.get("/record/0/write").text
    assert "def solution():" in form and 'hx-post="/record/0/write/check"' in form
    assert "wrong answer" in client.post("/record/0/write/check", data={"text": WRONG_PROGRAM}, headers=WITH_TOKEN).text
    checked = client.post("/record/0/write/check", data={"text": RIGHT_PROGRAM}, headers=WITH_TOKEN)
    assert "status-correct" in checked.text and not python_samples.with_name("test-samples.jsonl.review.jsonl").exists()
    empty = client.post("/record/0/write", data={"text": "  "}, headers=WITH_TOKEN)
    assert empty.status_code == 400 and "the CoT is empty" in empty.text
    saved = client.post("/record/0/write", data={"text": RIGHT_PROGRAM}, headers=WITH_TOKEN)
    assert saved.status_code == 200 and 'id="sample-1"' in saved.text and "written by local" in saved.text
    assert "mark-accepted" in saved.text and 'hx-swap-oob="true">' in saved.text  # the editor closes again
    view = client.get("/record/0").text
    assert "written by local" in view and "No sample of this question is right" not in view
    assert "mark-written" in client.get("/?filter=written").text
    line = json.loads(python_samples.with_name("test-samples.jsonl.review.jsonl").read_text())
    assert (line["event"], line["sample"], line["status"], line["reviewer"]) == ("write", 1, "correct", "local")


def test_a_written_nl_cot_must_state_its_answer(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", [samples_row("gsm8k_1", "2 + 3?", 5.0, ["no idea"], [None])])
    client = TestClient(create_app(Session(load_collection([data])), TOKEN))
    assert "Therefore, the answer is:" in client.get("/record/0/write").text
    assert "no answer" in client.post("/record/0/write/check", data={"text": "2 + 3 = 5"}, headers=WITH_TOKEN).text
    right = client.post("/record/0/write/check", data={"text": "2 + 3 = 5\nTherefore, the answer is: 5"},
                        headers=WITH_TOKEN)
    assert "status-correct" in right.text
    wrong_step = client.post("/record/0/write/check", data={"text": "2 + 3 = 6\nTherefore, the answer is: 5"},
                             headers=WITH_TOKEN)
    assert "wrong step" in wrong_step.text
