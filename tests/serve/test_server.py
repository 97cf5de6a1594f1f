"""A real `reftune serve` process over the tiny model on loopback, and `annotate --source model`
against it: no mock anywhere between the two. The model has random weights (a trained one costs
minutes of CPU here): what is checked is the path, while tests/annotate's endpoint answers right."""
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from reftune.cli import main
from reftune.tasks import get_task


def post(url: str, body: bytes | dict):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_server(model: str, *options: str):
    """A `reftune serve` process on a free loopback port, and the URL it printed."""
    process = subprocess.Popen([sys.executable, "-m", "reftune.cli", "serve", model, "--port", "0", *options],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, url, lines = time.monotonic() + 120, None, []
    while url is None and time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        lines.append(line)
        found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        url = found.group(1) if found else None
    assert url, "".join(lines)
    return process, url


@pytest.fixture(scope="module")
def server():
    process, url = start_server("tiny", "--served-name", "tiny-arithmetic", "--tiny-task", "arithmetic")
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_server_answers_the_openai_routes_and_survives_bad_requests(server):
    process, url = server
    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
        assert [m["id"] for m in json.loads(response.read())["data"]] == ["tiny-arithmetic"]
    status, body = post(f"{url}/completions", {"model": "tiny-arithmetic", "prompt": "Question:\nTom has 3 apples.\n",
                                               "max_tokens": 16, "n": 2, "temperature": 1.0})
    assert status == 200 and len(body["choices"]) == 2 and body["usage"]["completion_tokens"] > 0
    bad = [post(f"{url}/completions", b"{not json"), post(f"{url}/completions", {"prompt": 7}),
           post(f"{url}/completions", {"prompt": "1 2 " * 900}), post(f"{url}/chat/completions", {"messages": "hi"}),
           post(f"{url}/completions", {"prompt": "x", "model": "gpt-4"}), post(f"{url}/nowhere", {})]
    assert [status for status, _ in bad] == [400, 400, 400, 400, 404, 404]
    assert all(isinstance(body["error"]["message"], str) for _, body in bad)
    assert "exceeds the model's context" in bad[2][1]["error"]["message"]
    status, _ = post(f"{url}/completions", {"prompt": "Question:\n", "max_tokens": 4})
    assert status == 200 and process.poll() is None  # alive after all of it


@pytest.mark.slow
def test_annotate_samples_the_served_model_through_the_http_path(server, tmp_path):
    _, url = server
    task = get_task("arithmetic")
    data = tmp_path / "questions.json"
    data.write_text(json.dumps([{"item_id": f"arith_{i}", "question": e.question,
                                 "answer_value": task.format_answer(e.answer)} for i, e in enumerate(task.load("train")[:8])]))
    empty = tmp_path / "zero-shot.txt"
    empty.write_text("")
    output = tmp_path / "out"
    args = ["annotate", "--task", "arithmetic", "--data", str(data), "--output", str(output),
            "--source", "model", "--endpoint", url, "--api-model", "tiny-arithmetic", "--prompt-file", str(empty),
            "--num-samples", "4", "--keep-per-question", "2", "--temperature", "1.0", "--max-new-tokens", "120",
            "--concurrency", "8", "--no-progress"]
    assert main(args) == 0
    summary = json.loads((output / "annotate.json").read_text())
    assert summary["requests"] == 4 * summary["questions"] and summary["tokens_out"] > 0
    assert sum(summary["verdicts"].values()) == summary["requests"]
    records = json.loads((output / "annotated.json").read_text())
    assert len({r["item_id"] for r in records}) == len(records) == summary["cots"]
    rejects = [json.loads(line) for line in (output / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) + summary["verdicts"].get("correct", 0) == summary["requests"]
    assert all(r["reason"] in ("no_answer", "wrong_answer", "wrong_step") for r in rejects)
    events = [json.loads(line) for line in (output / "journal.jsonl").read_text().splitlines()]
    responses = [e for e in events if e["event"] == "response"]
    assert len(responses) == summary["requests"] and all(e["tokens_in"] > 0 for e in responses)


@pytest.fixture(scope="module")
def capped_server():
    process, url = start_server("tiny", "--max-request-rows", "8", "--max-body-bytes", "6000000", "--max-batch", "4")
    yield process, url
    process.kill()
    process.wait(timeout=30)


def error_of(reply) -> tuple[int, str]:
    status, body = reply
    return status, body["error"]["message"]


@pytest.mark.slow
def test_a_request_is_capped_in_rows_and_bytes_and_answered_in_max_batch_pieces(capped_server):
    process, url = capped_server
    status, message = error_of(post(f"{url}/completions", {"prompt": ["Question:\n"] * 3, "n": 3}))
    assert status == 400 and "asks for 9 completions (3 prompts x n=3)" in message and "--max-request-rows" in message
    status, message = error_of(post(f"{url}/completions", {"prompt": "1 " * 3_500_000}))
    assert status == 400 and "is 7000014 bytes, more than the 6000000 this server takes" in message
    assert "--max-body-bytes" in message
    status, body = post(f"{url}/completions", {"prompt": "Question:\n", "n": 8, "max_tokens": 4})
    assert status == 200 and len(body["choices"]) == 8 and process.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("raw, words", [
    (b'{"prompt": "x", "max_tokens": Infinity}', "Infinity is not a JSON number"),
    (b'{"prompt": "x", "max_tokens": NaN}', "NaN is not a JSON number"), (b'{"prompt": "x", "n": NaN}', "NaN is not"),
    (b'{"prompt": "\\ud800"}', "a lone surrogate"), (b'{"prompt": "\xed\xa0\x80"}', "a lone surrogate"),
    (b'{"messages": [{"role": "user", "content": "\\udc00"}]}', "'messages' holds '\\udc00', a lone surrogate"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")])
def test_non_finite_numbers_lone_surrogates_and_deep_json_are_400s(server, raw, words):
    _, url = server
    route = "chat/completions" if b"messages" in raw else "completions"
    status, message = error_of(post(f"{url}/{route}", raw))
    assert status == 400 and words in message


@pytest.mark.slow
def test_tokenising_a_long_prompt_does_not_hold_up_the_other_routes(capped_server):
    """A 5 MB prompt takes the tiny tokenizer seconds: /v1/models answers meanwhile."""
    import threading

    _, url = capped_server
    big = {}
    sender = threading.Thread(target=lambda: big.update(reply=post(f"{url}/completions", {"prompt": "1 2 " * 1_250_000})))
    sender.start()
    time.sleep(0.5)  # the body is across; the server is tokenising it
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/models", timeout=60) as response:
        assert response.status == 200
    waited, still_tokenising = time.monotonic() - started, sender.is_alive()
    sender.join(timeout=120)
    assert big["reply"][0] == 400 and "exceeds the model's context" in big["reply"][1]["error"]["message"]
    assert still_tokenising and waited < 1.0, f"/v1/models waited {waited:.2f} s"


@pytest.mark.slow
def test_ctrl_c_stops_the_server_cleanly(server):
    process, _ = server  # the module's server, last of this file's tests
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and "serve: stopped" in out and "Traceback" not in out
