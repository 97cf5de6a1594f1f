"""Suggest as a reviewer uses it, in headless chromium: the app over a question with no CoT asks a real
`reftune serve` process (the tiny model) for CoTs; one is kept as it is, another edited then kept, and
when the server goes away the page says so and the rest keeps working."""
import json

import pytest
from served_model import arithmetic_questions, start_tiny_endpoint, stop
from test_browser import browser, new_page, serving  # noqa: F401 (browser: a fixture)

from reftune.review.suggest import open_suggester

pytestmark = pytest.mark.slow


def test_suggest_then_keep_one_and_edit_another_then_the_endpoint_goes_away(browser, tmp_path):  # noqa: F811
    data, zero_shot = arithmetic_questions(tmp_path)
    process, endpoint = start_tiny_endpoint()
    try:
        suggester = open_suggester(endpoint, None, 3, str(zero_shot))
        with serving([data], suggester=suggester) as url:
            page = new_page(browser)
            page.goto(url + "/record/0")
            assert "it has none" in page.locator("p.none-right").inner_text()

            # s asks the model; its three CoTs come back checked, each with Keep and Edit
            page.keyboard.press("s")
            suggestions = page.locator("#suggestions article.suggestion")
            suggestions.nth(2).wait_for()
            assert suggestions.count() == 3 and suggestions.first.locator(".badge").count() >= 2

            # keep the first: it becomes sample #1 of the question, marked with its source
            suggestions.first.locator("button.keep").click()
            kept = page.locator("#written article#sample-0")
            kept.wait_for()
            assert f"suggested by tiny at {endpoint}, kept by local" in kept.locator("header").inner_text()
            page.locator("#suggestions article.suggestion.kept", has_text="Kept as sample #1").wait_for()

            # edit the second in the editor, then save (Ctrl+Enter): sample #2, marked edited
            suggestions.nth(1).locator("button.edit-suggestion").click()
            editor = page.locator("#write textarea")
            editor.wait_for()
            editor.fill("2 + 3 = 5\nTherefore, the answer is: 5")
            page.keyboard.press("Control+Enter")
            page.locator("#written article#sample-1").wait_for()
            assert ", edited, kept by local" in page.locator("#written article#sample-1 header").inner_text()

            # the model goes away: Suggest says so on the page, and the question still works
            stop(process)
            page.locator("#suggest button.suggest").click()
            page.locator("#flash", has_text="is it still running?").wait_for()
            page.locator("#sample-0 button.reject").click()
            page.locator("#sample-0 .badge.mark-rejected").wait_for()
            assert page.errors == []
    finally:
        stop(process)
    events = [json.loads(line) for line in (tmp_path / "questions.json.review.jsonl").read_text().splitlines()]
    assert [(e["event"], e["source"]) for e in events] == [("write", f"tiny at {endpoint}"),
                                                           ("write", f"tiny at {endpoint}, edited"), ("reject", "")]
