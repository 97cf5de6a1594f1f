"""`reftune serve` as the official `openai` Python client uses it: a real server process on loopback over
a tiny model folder the test builds (random weights, a chat template), no mock between them. Greedy
decoding makes a streamed answer comparable with the same request unstreamed."""
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from test_batcher import EndlessSlowModel
from test_server import start_server

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow
PROMPT = "Question:\nTom has 3 apples and buys 2 more. How many apples does he have?\nAnswer reasoning:\n"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    """The tiny model saved as a HF folder named tiny-arith, with a chat template."""
    from reftune.model.loading import load_policy, save_pretrained
    from reftune.tasks import get_task

    task = get_task("arithmetic")
    policy = load_policy("tiny", tokenizer_texts=[task.prompt(e) + task.target(e) for e in task.load("train")[:200]])
    policy.tokenizer.chat_template = CHAT_TEMPLATE
    folder = tmp_path_factory.mktemp("models") / "tiny-arith"
    save_pretrained(policy.model, policy.tokenizer, folder)
    return str(folder)


@pytest.fixture(scope="module")
def client(model_folder):
    process, url = start_server(model_folder, "--max-request-rows", "8", "--max-body-bytes", "200000")
    yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    process.kill()
    process.wait(timeout=30)


def test_a_model_folder_is_served_under_its_name_for_completions_and_chat(client):
    assert [m.id for m in client.models.list()] == ["tiny-arith"]
    completion = client.completions.create(model="tiny-arith", prompt=PROMPT, max_tokens=12, n=2)
    assert len(completion.choices) == 2 and completion.usage.completion_tokens > 0
    assert completion.choices[0].logprobs is None
    chat = client.chat.completions.create(model="tiny-arith", messages=[{"role": "user", "content": "2 + 2?"}],
                                          max_tokens=12)
    assert chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str)


def test_a_streamed_completion_is_the_unstreamed_text_in_pieces_then_its_usage(client):
    options = dict(model="tiny-arith", prompt=PROMPT, max_tokens=40, temperature=0)
    whole = client.completions.create(**options)
    chunks = list(client.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    pieces, usage = [c for c in chunks if c.choices], chunks[-1]
    assert len(pieces) > 1 and "".join(c.choices[0].text for c in pieces) == whole.choices[0].text
    assert pieces[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in pieces[:-1])
    assert usage.choices == [] and usage.usage.model_dump() == whole.usage.model_dump()
    assert len({c.id for c in chunks}) == 1


def test_a_streamed_chat_names_the_role_first_and_each_choice_ends_with_its_reason(client):
    options = dict(model="tiny-arith", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=30,
                   temperature=0)
    whole = client.chat.completions.create(**options)
    chunks = list(client.chat.completions.create(**options, stream=True, n=2))
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert "".join(c.delta.content or "" for c in mine) == whole.choices[0].message.content
        assert mine[-1].finish_reason == whole.choices[0].finish_reason


def test_log_probs_come_with_the_top_k_per_token_streamed_or_not(client):
    options = dict(model="tiny-arith", prompt=PROMPT, max_tokens=20, temperature=0, logprobs=3)
    completion = client.completions.create(**options).choices[0]
    logprobs = completion.logprobs
    assert "".join(logprobs.tokens) == completion.text and len(logprobs.token_logprobs) == len(logprobs.tokens)
    assert all(0 < len(top) <= 3 for top in logprobs.top_logprobs)
    # greedy: each token is its position's most likely one
    assert all(lp == pytest.approx(max(top.values()), abs=1e-4)
               for lp, top in zip(logprobs.token_logprobs, logprobs.top_logprobs))
    assert logprobs.text_offset == sorted(logprobs.text_offset) and logprobs.text_offset[0] == 0
    streamed = list(client.completions.create(**options, stream=True))
    assert [t for c in streamed for t in c.choices[0].logprobs.tokens] == logprobs.tokens
    chat = client.chat.completions.create(model="tiny-arith", messages=[{"role": "user", "content": "2 + 3?"}],
                                          max_tokens=20, logprobs=True, top_logprobs=2).choices[0]
    content = chat.logprobs.content
    assert "".join(t.token for t in content) == chat.message.content
    assert all(len(t.top_logprobs) == 2 and t.bytes == list(t.token.encode()) for t in content)


def test_what_the_server_cannot_do_or_take_is_a_400_naming_it_streamed_or_not(client):
    refused = [
        (dict(prompt=[PROMPT] * 3, n=3, stream=True),
         r"asks for 9 completions \(3 prompts x n=3\).*--max-request-rows"),
        (dict(prompt="1 2 " * 60_000, stream=True), "--max-body-bytes"),
        (dict(prompt=PROMPT, echo=True), "'echo' is not supported by reftune serve"),
        (dict(prompt=PROMPT, logprobs=30, stream=True), "'logprobs' must be between 0 and 20"),
        (dict(prompt=PROMPT, seed=3, temperature=0.8), "'seed' is not supported when sampling"),
        (dict(prompt=PROMPT, best_of=2), "'best_of' is not supported"),
    ]
    for options, words in refused:
        with pytest.raises(openai.BadRequestError, match=words):
            client.completions.create(model="tiny-arith", max_tokens=4, **options)
    with pytest.raises(openai.NotFoundError, match="model 'gpt-4' not found"):
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=4, stream=True)
    with pytest.raises(openai.BadRequestError, match="'response_format' is not supported"):
        client.chat.completions.create(model="tiny-arith", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_object"})
    assert client.completions.create(model="tiny-arith", prompt=PROMPT, max_tokens=2).choices  # still serving


def test_a_client_that_leaves_mid_stream_stops_the_work(tiny_policy):
    """In process, to watch the model: a stream of 900 tokens (18 s at 20 ms a step) is dropped
    within a second of its client closing the connection."""
    import uvicorn

    from reftune.generation.rollout import stop_token_ids
    from reftune.listening import bind
    from reftune.serve.app import build_app
    from reftune.serve.batcher import Batcher

    slow = EndlessSlowModel(tiny_policy.model, stop_token_ids(tiny_policy.model, tiny_policy.tokenizer))
    batcher = Batcher(SimpleNamespace(model=slow, tokenizer=tiny_policy.tokenizer), max_batch=4, seed=0)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(build_app(batcher, "slow", 1000), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/completions"
        body = {"prompt": "Question:\n", "max_tokens": 900, "stream": True}
        with httpx.stream("POST", url, json=body, timeout=60) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            first = next(response.iter_lines())
            assert first.startswith("data: {")
        assert stops_changing(lambda: slow.calls) and slow.calls < 300, "the model still runs for a client that left"
        assert batcher.batch_sizes == []  # the call never ran to its end
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        batcher.close()
        sock.close()


def stops_changing(count, quiet: float = 0.5, within: float = 5.0) -> bool:
    """Whether count() holds still for `quiet` seconds, `within` seconds from now."""
    deadline, last = time.monotonic() + within, count()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        if count() == last:
            return True
        last = count()
    return False
