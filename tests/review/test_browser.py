"""What a reviewer sees and does, in real headless chromium (Debian's, driven by Playwright) against a
real uvicorn server on 127.0.0.1. REFTUNE_SCREENSHOTS=folder saves the list, the question view and
the comparison view there."""
import json
import os
import re
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from review_inputs import SCRIPT_PAYLOAD

from reftune.review.app import create_app
from reftune.review.command import LOOPBACK_NAMES, bind
from reftune.review.records import load_collection
from reftune.review.session import Session
from reftune.tasks import get_task
from reftune.training.samples import QuestionSamples

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
QUESTIONS = 16


def variants(program: str) -> dict[str, str]:
    """The gold program and three ways a model gets it wrong."""
    wrong = re.sub(r" ([-+*/]) ", lambda m: {"+": " - ", "-": " + ", "*": " + ", "/": " * "}[m.group(1)], program, count=1)
    broken = program.replace("return result", "return result_of_nothing")
    return {"right": program, "wrong": wrong, "broken": broken, "cut": program.split("\n    result")[0]}


def write_run(path: Path, examples, plans: list[list[str]], extra_rows: list[dict] = ()) -> Path:
    """A samples file as `reftune sample` writes it, through the same writer (QuestionSamples.to_json)."""
    task = get_task("svamp", style="python")
    texts = [[variants(e.cot)[kind] for kind in plan] for e, plan in zip(examples, plans)]
    answers = task.extract_answers([text for group in texts for text in group])
    rows, at = [], 0
    for example, group in zip(examples, texts):
        found = answers[at:at + len(group)]
        at += len(group)
        rewards = [1.0 if a is not None and task.is_correct(a, example.answer) else (0.1 if a is not None else 0.0)
                   for a in found]
        rows.append(QuestionSamples(example, group, found, rewards, [True] * len(group)).to_json(task))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in [*rows, *extra_rows]))
    return path


@pytest.fixture()
def runs(tmp_path, shared_data) -> tuple[Path, Path]:
    """Two runs on the same SVAMP questions (P-CoT): 'sft' and 'reft', with flips both ways, one
    completion carrying a script payload, and one malformed line."""
    examples = get_task("svamp", style="python").load("train", shared_data / "svamp" / "svamp_python_sdp.json")[:QUESTIONS]
    cycle = [["wrong"], ["right", "right", "wrong", "right"], ["broken", "right", "wrong", "wrong"],
             ["right", "cut", "right", "right"]]
    sft = write_run(tmp_path / "sft" / "test-samples.jsonl", examples, [cycle[n % 4] for n in range(QUESTIONS)],
                    [{"id": "svamp_payload", "question": "What does this page run?", "gold": 1.0,
                      "samples": [SCRIPT_PAYLOAD], "answers": [None], "rewards": [0.0], "correct": [False],
                      "finished": [True], "vote": None, "vote_correct": False}])
    with open(sft, "a") as out:
        out.write('{"id": "svamp_cut", "question": \n')
    reft = write_run(tmp_path / "reft" / "test-samples.jsonl", examples,
                     [cycle[(n + 1) % 4] if n % 3 == 0 else cycle[n % 4] for n in range(QUESTIONS)])
    return sft, reft


@contextmanager
def serving(paths, **session_options):
    """A uvicorn server on a free 127.0.0.1 port in a thread, over a fresh session of `paths`
    (session_options: a suggester, a verifier)."""
    import uvicorn

    app = create_app(Session(load_collection(paths), **session_options), secrets.token_urlsafe(16), LOOPBACK_NAMES)
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


def new_page(browser):
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(20_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def screenshot(page, name: str) -> None:
    folder = os.environ.get("REFTUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def card(page, number: int):
    return page.locator(f"article#sample-{number}")


def press_on(page, number: int, key: str) -> None:
    """Press `key` once sample `number` is the selected one and no request is in flight (a late
    response, say a live check's, could otherwise swap the card back over what the key did)."""
    page.locator(f"article#sample-{number}.selected").wait_for()
    page.wait_for_load_state("networkidle")
    page.keyboard.press(key)


def test_filter_edit_recheck_keyboard_reload_and_export(browser, runs, shared_data):
    sft, reft = runs
    sources_before = [path.read_bytes() for path in runs]
    with serving([sft, reft]) as url:
        page = new_page(browser)
        page.goto(url + "/")
        assert page.locator("table.records tr.row").count() == 2 * QUESTIONS + 2
        assert "not valid JSON" in page.locator("td.error").first.inner_text()  # the malformed line, as a row
        screenshot(page, "review-list.png")

        # filter to wrong answers: every row left says so
        page.select_option("#filter", "wrong")
        page.wait_for_url(re.compile(r"filter=wrong"))
        outcomes = page.locator("table.records tr.row td span.badge").all_inner_texts()
        assert outcomes and set(outcomes) == {"wrong"}

        # open the first wrong question; its only sample is a wrong program
        page.locator("table.records a.open").first.click()
        page.wait_for_url(re.compile(r"/record/\d+\?filter=wrong"))
        first_url = page.url
        assert "wrong answer" in card(page, 0).inner_text()

        # e edits; the live check runs as the text changes; a fixed program shows as correct
        press_on(page, 0, "e")
        editor = card(page, 0).locator("textarea")
        editor.wait_for()
        record_id = page.locator("h1").inner_text().split()[0]
        fixed = gold_programs(shared_data)[record_id]
        assert editor.input_value() != fixed
        editor.fill(fixed)
        page.locator("#check-0 .badge.status-correct").wait_for()
        page.keyboard.press("Control+Enter")
        page.locator("#sample-0 .badge.mark-edited").wait_for()
        assert "correct" in card(page, 0).locator("header").inner_text()

        # a accepts the selected sample; on a question with several samples, 2 then r rejects the second
        press_on(page, 0, "a")
        page.locator("#sample-0 .badge.mark-accepted").wait_for()
        page.keyboard.press("j")
        page.wait_for_url(lambda u: u != first_url and "filter=wrong" in u)  # j: the next wrong question
        page.goto(url + "/?search=svamp_1")  # svamp_1 is sampled four times in the sft run
        page.locator("table.records a.open", has_text=re.compile(r"^svamp_1$")).first.click()
        page.wait_for_url(re.compile(r"/record/1\?search=svamp_1"))
        press_on(page, 0, "2")
        press_on(page, 1, "r")
        page.locator("#sample-1 .badge.mark-rejected").wait_for()
        press_on(page, 1, "1")
        press_on(page, 0, "a")
        page.locator("#sample-0 .badge.mark-accepted").wait_for()
        assert page.locator("#progress").inner_text() == f"reviewed 2 of {2 * QUESTIONS + 2}"
        screenshot(page, "review-question.png")

        # a reload shows the same state
        page.reload()
        assert page.locator("#sample-1 .badge.mark-rejected").count() == 1
        assert page.locator("#sample-0 .badge.mark-accepted").count() == 1
        page.goto(first_url)
        assert "edited (version 1)" in card(page, 0).inner_text() and "return" in card(page, 0).inner_text()

        # export, then load the file with the SFT data loader
        page.locator("button.export").click()
        page.locator("#flash .export-result").wait_for()
        training_file = page.locator("#flash code.training-file").first.inner_text()
        assert page.errors == []
    examples = get_task("svamp", style="python").load("train", training_file)
    assert len(examples) == 2 and fixed.strip() in [e.cot for e in examples]
    assert [path.read_bytes() for path in runs] == sources_before  # the data files were never rewritten

    # a restarted server replays the journal: the same state again
    with serving([sft, reft]) as url:
        page = new_page(browser)
        page.goto(url + "/?filter=accepted")
        assert page.locator("table.records tr.row").count() == 2
        assert page.locator("#progress").inner_text() == f"reviewed 2 of {2 * QUESTIONS + 2}"


def gold_programs(shared_data) -> dict[str, str]:
    examples = get_task("svamp", style="python").load("train", shared_data / "svamp" / "svamp_python_sdp.json")
    return {e.id: e.cot for e in examples[:QUESTIONS]}


def test_a_script_payload_shows_as_text_and_does_not_run(browser, runs):
    with serving(list(runs)) as url:
        page = new_page(browser)
        page.goto(url + "/")
        page.keyboard.press("/")  # / jumps to the search box; the list follows the typing
        page.keyboard.type("svamp_payload")
        page.wait_for_url(re.compile(r"search=svamp_payload"))
        page.wait_for_load_state("networkidle")  # no list swap left in flight to detach the link clicked below
        assert page.locator("table.records tr.row").count() == 1
        page.locator("table.records a.open").first.click()
        page.locator("article#sample-0").wait_for()
        assert "<script>window.pwned = 1</script>" in card(page, 0).locator("pre.cot").inner_text()
        page.keyboard.press("e")
        card(page, 0).locator("textarea").wait_for()
        assert page.evaluate("window.pwned") is None
        assert page.locator("article img").count() == 0 and page.errors == []


def test_comparison_lists_flips_and_shows_a_question_side_by_side(browser, runs):
    with serving(list(runs)) as url:
        page = new_page(browser)
        page.goto(url + "/compare?a=0&b=1")
        down = page.locator(".flip-down li").count()
        up = page.locator(".flip-up li").count()
        assert down > 0 and up > 0
        assert page.locator(".side-by-side section").count() == 2
        screenshot(page, "review-compare.png")
        page.goto(url + "/stats?source=0")
        assert page.locator("figure.chart svg").count() >= 4 and page.errors == []


def test_two_tabs_editing_one_sample_do_not_overwrite_each_other(browser, runs, shared_data):
    program = gold_programs(shared_data)["svamp_0"]
    with serving(list(runs)) as url:
        tabs = [new_page(browser), new_page(browser)]
        for tab in tabs:
            tab.goto(url + "/record/0")
            press_on(tab, 0, "e")
            card(tab, 0).locator("textarea").wait_for()
        first_text, second_text = program, program.replace("return result", "return result + 0")
        card(tabs[0], 0).locator("textarea").fill(first_text)
        tabs[0].keyboard.press("Control+Enter")
        tabs[0].locator("#sample-0 .badge.mark-edited").wait_for()
        card(tabs[1], 0).locator("textarea").fill(second_text)
        tabs[1].keyboard.press("Control+Enter")
        conflict = tabs[1].locator("#sample-0 .conflict")
        conflict.wait_for()
        assert "Another tab saved a newer version" in conflict.inner_text()
        assert conflict.locator("pre").inner_text().strip() == first_text.strip()  # the newer text, shown
        assert card(tabs[1], 0).locator("textarea").input_value() == second_text  # nothing lost
        tabs[0].reload()
        assert "edited (version 1)" in card(tabs[0], 0).inner_text()


def test_a_kept_cot_that_fails_the_check_is_shown_before_export_and_left_out(browser, runs):
    sft, _ = runs
    with serving([sft]) as url:
        page = new_page(browser)
        page.goto(url + "/record/0")  # svamp_0: its one sample is a wrong program
        assert page.locator("#failing").is_hidden()
        press_on(page, 0, "a")
        warning = card(page, 0).locator(".failing-warning")
        warning.wait_for()
        shown = " ".join(warning.inner_text().split())
        assert "accepted, but fails the check (wrong answer): Export leaves it out" in shown
        assert page.locator("#failing").inner_text() == "1 kept CoT fails the check: Export leaves it out"
        page.locator("#failing").click()
        page.wait_for_url(re.compile(r"filter=failing"))
        assert page.locator("table.records tr.row").count() == 1
        assert page.locator("table.records tr.row .mark-failing").count() == 1
        page.locator("button.export").click()
        page.locator("#flash .export-result").wait_for()
        assert "left out: svamp_0 #1: wrong answer" in page.locator("#flash td.failing").inner_text()
        training_file = page.locator("#flash code.training-file").first.inner_text()
        assert page.errors == []
    assert json.loads(Path(training_file).read_text()) == []
