"""A team reviewing at once, and a CoT written by hand, in real headless chromium against a real
uvicorn server: every reviewer in a browser context of their own (their own cookies)."""
import asyncio
import json
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from review_inputs import RIGHT_PROGRAM, SCRIPT_PAYLOAD, WRONG_PROGRAM, samples_row, write_jsonl
from test_browser import CHROMIUM, CHROMIUM_ARGS, card, new_page, press_on

from reftune.review.app import create_app
from reftune.review.command import LOOPBACK_NAMES, bind
from reftune.review.journal import replay
from reftune.review.records import load_collection
from reftune.review.session import Session
from reftune.review.team import Team
from reftune.tasks import get_task

pytestmark = pytest.mark.slow
LINKS = {"alice": "alice-secret-token", "bob": "bob-secret-token", "carol": "carol-secret-token"}


@contextmanager
def serving(paths, team: Team | None = None, **load):
    """A uvicorn server on a free 127.0.0.1 port in a thread; a team's reviewers sign in with LINKS."""
    import uvicorn

    tokens = {LINKS[name]: name for name in team.reviewers} if team else None
    app = create_app(Session(load_collection(paths, **load), team=team), "csrf", LOOPBACK_NAMES, tokens)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture()
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def context_page(browser):
    """A page in a browser context of its own: its own cookies, as another person's browser."""
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(20_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def reviewer_page(browser, url: str, name: str):
    """A browser context of the reviewer's own, signed in through their link."""
    page = context_page(browser)
    page.goto(f"{url}/?token={LINKS[name]}")
    assert "token" not in page.url  # the redirect dropped it from the address bar
    return page


def nl_rows(questions: int, samples: int) -> list[dict]:
    text = "2 + 3 = 5\nTherefore, the answer is: 5"
    return [samples_row(f"gsm8k_{n}", f"Tom has 2 apples and buys 3 ({n}). How many?", 5.0, [text] * samples,
                        [5.0] * samples) for n in range(questions)]


QUESTIONS, SAMPLES = 10, 5  # two reviewers x 10 questions x 5 samples: 100 decisions


async def decide_all(context, url: str, name: str, order: list[int]) -> None:
    """One reviewer's accept on every sample: on each question, all its Accept buttons clicked at once."""
    from playwright.async_api import expect

    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(f"{url}/?token={LINKS[name]}")
    for index in order:
        await page.goto(f"{url}/record/{index}")
        for button in await page.locator("article.sample button.accept").all():
            await button.click()
        await expect(page.locator("article.sample .badge.mark-accepted")).to_have_count(SAMPLES)


async def two_reviewers_at_once(url: str) -> float:
    """alice goes through the questions forwards and bob backwards, at the same moment: they work on
    different questions, then on the same ones where they meet."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        contexts = [await browser.new_context(), await browser.new_context()]
        started = time.perf_counter()
        await asyncio.gather(decide_all(contexts[0], url, "alice", list(range(QUESTIONS))),
                             decide_all(contexts[1], url, "bob", list(reversed(range(QUESTIONS)))))
        took = time.perf_counter() - started
        await browser.close()
    return took


def test_two_reviewers_deciding_at_the_same_moment_lose_no_decision(tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(QUESTIONS, SAMPLES))
    pytest.importorskip("playwright.async_api")
    with serving([data], Team(("alice", "bob"), overlap=2)) as url:
        took = asyncio.run(two_reviewers_at_once(url))
    lines = data.with_name("dev-samples.jsonl.review.jsonl").read_text().splitlines()
    reviews, problems = replay(lines)
    assert problems == [] and len(lines) == 2 * QUESTIONS * SAMPLES
    for name in ("alice", "bob"):
        assert all(reviews[(name, f"gsm8k_{n}", s)].decision == "accepted"
                   for n in range(QUESTIONS) for s in range(SAMPLES))
    print(f"two reviewers, {len(lines)} decisions at once: {took:.1f} s, none lost")


def test_each_reviewer_sees_only_their_queue_and_nobody_gets_in_without_a_link(browser, tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(6, 1))
    with serving([data], Team(("alice", "bob"))) as url:
        stranger = context_page(browser)
        stranger.goto(url + "/")
        assert "forbidden: open reftune review with your own link" in stranger.content()
        alice, bob = reviewer_page(browser, url, "alice"), reviewer_page(browser, url, "bob")
        ids = {page: page.locator("table.records a.open").all_inner_texts() for page in (alice, bob)}
        assert ids[alice] == ["gsm8k_0", "gsm8k_2", "gsm8k_4"] and ids[bob] == ["gsm8k_1", "gsm8k_3", "gsm8k_5"]
        assert alice.locator("header.top .who").inner_text() == "alice"
        assert alice.locator("#progress").inner_text() == "reviewed 0 of 3"
        alice.goto(url + "/record/1")  # bob's
        assert "another reviewer" in alice.locator(".error-message").inner_text()
        alice.goto(url + "/record/2")
        press_on(alice, 0, "a")
        alice.locator("#sample-0 .badge.mark-accepted").wait_for()
        assert alice.locator("#progress").inner_text() == "reviewed 1 of 3"
        bob.reload()
        assert bob.locator("#progress").inner_text() == "reviewed 0 of 3"
        assert alice.errors == [] and bob.errors == []


def test_the_adjudicator_settles_a_disagreement_that_agreement_and_export_then_show(browser, tmp_path):
    data = write_jsonl(tmp_path / "dev-samples.jsonl", nl_rows(2, 2))
    team = Team(("alice", "bob", "carol"), overlap=3, adjudicator="carol")
    with serving([data], team) as url:
        alice, bob, carol = (reviewer_page(browser, url, name) for name in ("alice", "bob", "carol"))
        for page, key in ((alice, "a"), (bob, "r"), (carol, "a")):
            page.goto(url + "/record/0")
            press_on(page, 0, key)
            page.locator("#sample-0 .badge.mark-" + ("accepted" if key == "a" else "rejected")).wait_for()
        assert alice.locator("#disagreements-link").count() == 0
        carol.locator("#disagreements-link").click()
        item = carol.locator("article.disagreement")
        assert item.count() == 1 and "not settled" in item.inner_text()
        assert [t.split()[0] for t in item.locator("li.opinion").all_inner_texts()] == ["alice", "bob", "carol"]
        item.locator("button.settle-reject").click()
        carol.locator("article.disagreement.settled.rejected").wait_for()
        assert "settled: rejected" in carol.locator("article.disagreement").inner_text()
        carol.goto(url + "/stats")
        assert carol.locator("table.agreement-table tr[data-question='decision'] td").nth(1).inner_text() == "Fleiss' kappa"
        carol.locator("button.export").click()
        carol.locator("#flash .settled-counts").wait_for()
        summary = " ".join(carol.locator("#flash .settled-counts").inner_text().split())
        assert "0 agreed, 1 settled by the adjudicator, 0 by majority; 0 disagreements left out" in summary
        assert carol.errors == []
    assert json.loads(data.with_name("dev-samples.reviewed.json").read_text()) == []


def test_a_question_with_no_cot_gets_one_written_checked_live_and_exported(browser, tmp_path):
    data = tmp_path / "train.json"
    data.write_text(json.dumps([
        {"item_id": "svamp_1", "question": "Jack has 4 apples and buys 3 more. How many?", "answer_cot": "",
         "answer_value": "7"},
        {"item_id": "svamp_2", "question": "Jack has 4 apples and buys 3 more. How many now?",
         "answer_cot": WRONG_PROGRAM, "answer_value": "7"}]))
    with serving([data], task="svamp", style="python") as url:
        page = new_page(browser)
        page.goto(url + "/record/0")
        assert "(it has none): write one" in page.locator(".none-right").inner_text()
        page.keyboard.press("w")
        editor = page.locator("#write textarea")
        editor.wait_for()
        assert editor.input_value().startswith("def solution():")
        editor.fill(WRONG_PROGRAM)
        page.locator("#write-check .badge.status-wrong_answer").wait_for()  # checked in the sandbox as typed
        editor.fill(RIGHT_PROGRAM)
        page.locator("#write-check .badge.status-correct").wait_for()
        page.keyboard.press("Control+Enter")
        page.locator("#sample-0 .badge.mark-written").wait_for()
        assert "written by local" in card(page, 0).inner_text() and "accepted" in card(page, 0).inner_text()
        assert page.locator("#write button.write").count() == 1  # the editor closed again
        page.reload()
        assert "correct" in card(page, 0).locator("header").inner_text() and page.locator(".none-right").count() == 0

        page.goto(url + "/record/1")  # a wrong CoT only: a hostile text written there stays text
        assert "No sample of this question is right:" in page.locator(".none-right").inner_text()
        page.locator("#write button.write").click()
        page.locator("#write textarea").fill(SCRIPT_PAYLOAD)
        page.locator("#write button.save").click()
        page.locator("#sample-1 .badge.mark-written").wait_for()
        assert "<script>window.pwned = 1</script>" in card(page, 1).locator("pre.cot").inner_text()
        assert page.evaluate("window.pwned") is None and page.locator("article img").count() == 0

        page.locator("button.export").click()
        page.locator("#flash .export-result").wait_for()
        training_file = page.locator("#flash code.training-file").first.inner_text()
        assert page.errors == []
    examples = get_task("svamp", style="python").load("train", training_file)
    assert [(e.id, e.cot) for e in examples] == [("svamp_1", RIGHT_PROGRAM)]  # the failing payload left out
    assert re.search(r'"event": "write".*"reviewer": "local"', data.with_name("train.json.review.jsonl").read_text())
