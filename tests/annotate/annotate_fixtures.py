"""A small OpenAI-compatible endpoint for the annotate tests, on 127.0.0.1 in a thread: it answers
each question of the arithmetic fixture data with its right answer, and can misbehave on purpose
(fail every third request with 500 or 429, hang on some, answer HTML or plain text, refuse requests
with a 400 as a server does for a prompt past the model's context)."""
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reftune.tasks import get_task


@dataclass
class Behaviour:
    fail_every: int = 0  # every n-th completion request fails, alternately 500 and 429
    hang_every: int = 0  # every n-th completion request (not failed) sleeps hang_seconds first
    hang_seconds: float = 3.0
    delay: float = 0.0  # seconds before each answer
    body: str = "json"  # "json", "html" (an HTML page for everything) or "text" (200, not JSON)
    refuse: str = ""  # a message: completion requests from the refuse_from-th on get a 400 with it
    refuse_from: int = 1
    models: tuple = ("fake",)


@dataclass
class FakeEndpoint:
    url: str
    behaviour: Behaviour
    answers: dict  # question -> right answer text
    requests: list = field(default_factory=list)  # (question, outcome) per completion request
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def _handler(endpoint: FakeEndpoint):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status: int, body: str, kind: str = "application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (a hang it timed out on)

        def odd_body(self) -> bool:
            if endpoint.behaviour.body == "html":
                self.send(200, "<!doctype html><html><body>Welcome</body></html>", "text/html")
            elif endpoint.behaviour.body == "text":
                self.send(200, "OK, ready", "text/plain")
            return endpoint.behaviour.body != "json"

        def do_GET(self):
            if self.odd_body():
                return
            if self.path.rstrip("/").endswith("/models"):
                self.send(200, json.dumps({"data": [{"id": name} for name in endpoint.behaviour.models]}))
            else:
                self.send(404, json.dumps({"error": {"message": "no such path"}}))

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            if self.odd_body():
                return
            prompt = body.get("prompt") or body["messages"][-1]["content"]
            question = re.findall(r"Question:\n(.*?)\nAnswer reasoning:", prompt, re.DOTALL)
            question = question[-1] if question else prompt
            behaviour = endpoint.behaviour
            with endpoint.lock:
                number = len(endpoint.requests) + 1
                outcome = "ok"
                if behaviour.refuse and number >= behaviour.refuse_from:
                    outcome = "400"
                elif behaviour.fail_every and number % behaviour.fail_every == 0:
                    outcome = "500" if (number // behaviour.fail_every) % 2 else "429"
                elif behaviour.hang_every and number % behaviour.hang_every == 0:
                    outcome = "hang"
                endpoint.requests.append((question, outcome))
            if outcome in ("500", "429"):
                self.send(int(outcome), json.dumps({"error": {"message": f"deliberate {outcome}"}}))
                return
            if outcome == "400":
                self.send(400, json.dumps({"error": {"message": behaviour.refuse, "type": "invalid_request_error"}}))
                return
            endpoint.stopping.wait(behaviour.hang_seconds if outcome == "hang" else behaviour.delay)
            answer = endpoint.answers.get(question.strip(), "0")
            text = f"We work it out.\nTherefore, the answer is: {answer}"
            choice = {"message": {"role": "assistant", "content": text}} if "messages" in body else {"text": text}
            self.send(200, json.dumps({"choices": [{"index": 0, **choice, "finish_reason": "stop"}],
                                       "usage": {"prompt_tokens": 10, "completion_tokens": 7}}))

    return Handler


@pytest.fixture(scope="session")
def arithmetic_data(tmp_path_factory):
    """12 arithmetic questions as a ReFT-format file, and their answers."""
    task = get_task("arithmetic")
    examples = task.load("train")[:12]
    path = tmp_path_factory.mktemp("data") / "questions.json"
    path.write_text(json.dumps([{"item_id": f"arith_{i}", "question": e.question,
                                 "answer_value": task.format_answer(e.answer)} for i, e in enumerate(examples)]))
    return path, {e.question: task.format_answer(e.answer) for e in examples}


@pytest.fixture()
def fake_endpoint(arithmetic_data):
    _, answers = arithmetic_data
    endpoint = FakeEndpoint("", Behaviour(), answers)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    server.daemon_threads = True
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    endpoint.stopping.set()
    server.shutdown()
    server.server_close()


@pytest.fixture()
def empty_prompt_file(tmp_path):
    path = tmp_path / "zero-shot.txt"
    path.write_text("")
    return path
