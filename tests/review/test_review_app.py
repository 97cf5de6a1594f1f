"""Every route through Starlette's test client, bad input included."""
import json

import pytest
from review_inputs import BROKEN_PROGRAM, RIGHT_PROGRAM, SCRIPT_PAYLOAD, samples_row, write_jsonl
from review_inputs import nl_samples, python_samples  # noqa: F401 (fixtures)
from starlette.testclient import TestClient

from reftune.review.app import TOKEN_HEADER, create_app
from reftune.review.records import load_collection
from reftune.review.session import Session

TOKEN = "test-token"
WITH_TOKEN = {TOKEN_HEADER: TOKEN}


@pytest.fixture()
def client(python_samples, nl_samples):
    return TestClient(create_app(Session(load_collection([python_samples, nl_samples])), TOKEN))


def test_the_list_shows_every_record_and_the_malformed_line_as_an_error_row(client):
    page = client.get("/")
    assert page.status_code == 200 and "7 of 7 records" in page.text
    assert "line 3 of test-samples.jsonl: not valid JSON" in page.text and "svamp_4" in page.text


def test_the_list_filters_searches_sorts_and_pages(client):
    wrong = client.get("/?filter=wrong")
    assert "svamp_1" in wrong.text and "svamp_2" not in wrong.text
    found = client.get("/?search=pens&sort=-length", headers={"HX-Request": "true", "HX-Target": "list"})
    assert found.text.lstrip().startswith("<p class=\"summary\">2 of 7") and "<html" not in found.text
    assert client.get("/?page=99").status_code == 200


def test_a_bad_filter_is_a_400_with_one_line(client):
    page = client.get("/?filter=%3Cscript%3E")
    assert page.status_code == 400 and "unknown filter" in page.text and "<script>" not in page.text


def test_the_question_view_shows_the_program_output_and_the_vote(client):
    wrong = client.get("/record/0")
    assert wrong.status_code == 200 and "wrong answer" in wrong.text and "output: 1" in wrong.text
    broken = client.get("/record/3")
    assert "NameError" in broken.text and "program error" in broken.text
    two = client.get("/record/1")
    assert "majority vote <b>12</b>" in two.text and 'class="cot highlight"' in two.text


def test_a_script_payload_is_escaped_everywhere(client):
    for url, shown in [("/record/4", "pwned"), ("/record/4/sample/0/edit", "pwned"),
                       ("/?search=%3Cscript%3Ewindow", "svamp_4")]:
        text = client.get(url).text
        assert "<script>window" not in text and "<img src=x" not in text, url
        assert shown in text and "&lt;" in text, url  # shown, as text


def test_pages_forbid_inline_scripts(client):
    policy = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy


def test_an_unknown_record_or_sample_is_a_404_with_one_line(client):
    assert client.get("/record/999").status_code == 404
    assert "no record 999" in client.get("/record/999").text
    assert client.post("/record/0/sample/7/accept", headers=WITH_TOKEN).status_code == 404
    assert client.get("/record/-1").status_code == 404
    assert client.post("/record/0/sample/0/dance", headers=WITH_TOKEN).status_code == 404


def test_a_post_without_the_token_is_forbidden_and_changes_nothing(client, python_samples):
    for headers in ({}, {TOKEN_HEADER: "forged"}, {TOKEN_HEADER: "tést".encode()}):
        assert client.post("/record/0/sample/0/accept", headers=headers).status_code == 403
        assert client.post("/export", headers=headers).status_code == 403
    assert not python_samples.with_name("test-samples.jsonl.review.jsonl").exists()


def test_accept_reject_flag_and_note_return_the_card_and_the_progress(client):
    accepted = client.post("/record/1/sample/0/accept", headers=WITH_TOKEN)
    assert accepted.status_code == 200 and "mark-accepted" in accepted.text
    assert 'id="progress" class="progress" hx-swap-oob="true">reviewed 1 of 7' in accepted.text
    assert "mark-rejected" in client.post("/record/1/sample/1/reject", headers=WITH_TOKEN).text
    assert "Unflag" in client.post("/record/1/sample/1/flag", headers=WITH_TOKEN).text
    noted = client.post("/record/1/sample/1/note", data={"note": "<b>why</b>"}, headers=WITH_TOKEN)
    assert "note: &lt;b&gt;why&lt;/b&gt;" in noted.text
    assert "reviewed 1 of 7" in client.get("/").text


def test_live_check_turns_a_fixed_program_correct_without_saving(client, python_samples):
    checked = client.post("/record/0/sample/0/check", data={"text": RIGHT_PROGRAM}, headers=WITH_TOKEN)
    assert "status-correct" in checked.text and "answer <b class=\"answer\">7</b>" in checked.text
    broken = client.post("/record/0/sample/0/check", data={"text": BROKEN_PROGRAM}, headers=WITH_TOKEN)
    assert "program error" in broken.text
    assert not python_samples.with_name("test-samples.jsonl.review.jsonl").exists()


def test_saving_an_edit_rechecks_it_and_a_stale_second_tab_gets_a_conflict(client):
    saved = client.post("/record/0/sample/0/edit", data={"text": RIGHT_PROGRAM, "base": "0"}, headers=WITH_TOKEN)
    assert saved.status_code == 200 and "edited (version 1)" in saved.text and "status-correct" in saved.text
    stale = client.post("/record/0/sample/0/edit", data={"text": "def solution():\n    return 0", "base": "0"},
                        headers=WITH_TOKEN)
    assert stale.status_code == 409 and "Another tab saved a newer version" in stale.text
    assert "apples + bought" in stale.text and 'name="base" value="1"' in stale.text
    assert "return 0" in stale.text  # the second tab's own text stays in its editor


def test_an_edit_with_a_bad_base_or_no_text_is_a_400(client):
    assert client.post("/record/0/sample/0/edit", data={"text": "x", "base": "new"}, headers=WITH_TOKEN).status_code == 400
    assert client.post("/record/0/sample/0/check", data={}, headers=WITH_TOKEN).status_code == 400
    htmx = client.post("/record/0/sample/0/check", data={}, headers={**WITH_TOKEN, "HX-Request": "true"})
    assert htmx.headers["HX-Retarget"] == "#flash" and "no text field" in htmx.text


def test_export_writes_the_files_and_the_downloads_match(client, python_samples):
    client.post("/record/0/sample/0/edit", data={"text": RIGHT_PROGRAM, "base": "0"}, headers=WITH_TOKEN)
    result = client.post("/export", headers=WITH_TOKEN)
    assert result.status_code == 200 and '<td class="rows">1</td>' in result.text
    written = json.loads(python_samples.with_name("test-samples.reviewed.json").read_text())
    assert client.get("/export/0/training.json").json() == written
    assert client.get("/export/0/decisions.csv").text.startswith("file,id,sample,decision")
    assert client.get("/export/5/training.json").status_code == 404
    assert client.get("/export/0/passwd").status_code == 404


def test_a_kept_cot_that_fails_the_check_is_flagged_before_export_and_left_out(client, python_samples):
    accepted = client.post("/record/0/sample/0/accept", headers=WITH_TOKEN)  # a wrong program
    assert "accepted, but fails the check" in accepted.text and "Export leaves it out" in accepted.text
    assert 'id="failing"' in accepted.text and "1 kept CoT fails the check" in accepted.text  # the header, swapped in
    assert "1 kept CoT fails the check" in client.get("/").text
    assert "svamp_1" in client.get("/?filter=failing").text and "svamp_2" not in client.get("/?filter=failing").text
    result = client.post("/export", headers=WITH_TOKEN)
    assert '<td class="rows">0</td>' in result.text and "left out: svamp_1 #1: wrong answer" in result.text
    assert json.loads(python_samples.with_name("test-samples.reviewed.json").read_text()) == []
    assert client.get("/export/0/training.json").json() == []


def test_export_before_any_decision_writes_nothing(client, python_samples):
    assert "Nothing to export yet" in client.post("/export", headers=WITH_TOKEN).text
    assert not python_samples.with_name("test-samples.reviewed.json").exists()


def test_stats_and_compare_pages_render(client):
    stats = client.get("/stats?source=1")
    assert stats.status_code == 200 and "<svg" in stats.text and "Accuracy by question difficulty" in stats.text
    assert client.get("/stats?source=9").status_code == 404
    compare = client.get("/compare?a=0&b=1")
    assert compare.status_code == 200 and "questions in both" in compare.text
    assert client.get("/compare?a=0&b=1&id=missing").status_code == 404


def test_no_url_reads_a_path(client):
    for url in ["/static/../records.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/export/0/..%2f..%2fetc"]:
        response = client.get(url)
        assert response.status_code == 404 and "import" not in response.text, url
    assert client.get("/static/htmx.min.js").status_code == 200


def test_loopback_binding_refuses_other_host_names(python_samples):
    app = create_app(Session(load_collection([python_samples])), TOKEN, ["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/").status_code == 200
    assert TestClient(app, base_url="http://evil.example").get("/").status_code == 400


def test_rollouts_show_each_step_and_the_charts_by_step(tmp_path):
    rows = [dict(samples_row("svamp_1", "4 + 3?", 7.0, [BROKEN_PROGRAM, RIGHT_PROGRAM], [None, 7.0]), step=step)
            for step in (0, 50)]
    rows[1] = dict(samples_row("svamp_1", "4 + 3?", 7.0, [RIGHT_PROGRAM, RIGHT_PROGRAM], [7.0, 7.0]), step=50)
    client = TestClient(create_app(Session(load_collection([write_jsonl(tmp_path / "rollouts.jsonl", rows)])), TOKEN))
    view = client.get("/record/0").text
    assert "RL step 0 · mean reward 0.50" in view and "RL step 50 · mean reward 1.00" in view
    stats = client.get("/stats").text
    assert "Mean reward by RL step" in stats and "<polyline" in stats


def test_an_annotate_folder_shows_its_rejects_with_the_reason(tmp_path):
    (tmp_path / "annotated.json").write_text(json.dumps(
        [{"item_id": "svamp_1", "question": "4 + 3?", "answer_cot": RIGHT_PROGRAM, "answer_value": "7"}]))
    (tmp_path / "rejects.jsonl").write_text(json.dumps(
        {"item_id": "svamp_1", "question": "4 + 3?", "answer_value": "7", "answer_cot": SCRIPT_PAYLOAD,
         "reason": "no_answer", "detail": "<b>no return</b>"}) + "\n")
    client = TestClient(create_app(Session(load_collection([tmp_path])), TOKEN))
    view = client.get("/record/0").text
    assert "rejected by annotate: no_answer (&lt;b&gt;no return&lt;/b&gt;)" in view and "<script>window" not in view
