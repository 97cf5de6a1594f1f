"""`reftune review` as a user runs it: a real server process on 127.0.0.1, stopped with Ctrl-C."""
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from reftune.cli import main
from reftune.review.command import host_warning, is_loopback
from review_inputs import python_samples, samples_row, write_jsonl  # noqa: F401 (fixtures)


def test_a_missing_path_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["review", str(tmp_path / "missing.jsonl"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune review: error: ") and "does not exist" in err and err.count("\n") == 1


def test_only_loopback_addresses_pass_without_a_warning():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.4", "::", "example.com"]))
    assert host_warning("127.0.0.1") is None and "not loopback" in host_warning("0.0.0.0")


def start(path) -> tuple[subprocess.Popen, str]:
    """The review server's process (its lines up to the link kept as `process.printed`) and its link."""
    process = subprocess.Popen([sys.executable, "-m", "reftune.cli", "review", str(path), "--no-browser"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process.printed = []
    deadline = time.monotonic() + 60
    for line in process.stdout:
        process.printed.append(line)
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return process, found.group(1)
        assert time.monotonic() < deadline, "the server did not print its URL"
    raise AssertionError(f"the server exited with {process.wait()} before printing its URL")


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    return out


@pytest.mark.slow
def test_the_server_saves_each_action_and_a_restart_shows_it(python_samples):
    process, url = start(python_samples)
    try:
        page = httpx.get(url, timeout=30)
        token = re.search(r'"X-Reftune-Token": "([^"]+)"', page.text.replace("&#34;", '"')).group(1)
        assert httpx.post(url + "record/1/sample/0/accept", timeout=30).status_code == 403
        accepted = httpx.post(url + "record/1/sample/0/accept", headers={"X-Reftune-Token": token}, timeout=30)
        assert accepted.status_code == 200
    finally:
        out = stop(process)
    assert "run the same command to continue" in out and "reviewed 1 of 5" in out
    process, url = start(python_samples)
    try:
        assert "reviewed 1 of 5" in httpx.get(url, timeout=30).text
    finally:
        stop(process)


@pytest.mark.slow
def test_a_big_file_is_served_while_its_rest_is_read_in_the_background(tmp_path):
    text = "We add 2 and 3.\n2 + 3 = 5\nTherefore, the answer is: 5"
    rows = [samples_row(f"gsm8k_{n}", f"What is 2 + 3, question {n}?", 5.0, [text] * 4, [5.0] * 4) for n in range(3000)]
    process, url = start(write_jsonl(tmp_path / "test-samples.jsonl", rows))  # 2 MB: its first 64 KB read before it listens
    try:
        assert httpx.get(url, timeout=30).status_code == 200
        deadline = time.monotonic() + 120
        while "still loading" in (page := httpx.get(url, timeout=30).text):
            assert time.monotonic() < deadline, "the rest of the file was never read"
            time.sleep(0.5)
    finally:
        out = "".join(process.printed) + stop(process)  # the background reading may start before the link
    assert "reading the rest in the background" in out and "review: 3000 records (the rest in" in out
    assert "3000 of 3000 records" in page


def test_a_port_in_use_is_one_line_and_exit_2(python_samples, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["review", str(python_samples), "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_one_line_and_exit_2(python_samples, capsys, port):
    assert main(["review", str(python_samples), "--port", port, "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune review: error: --port must be in 0..65535") and err.count("\n") == 1


def test_a_demo_folder_is_one_line_naming_the_samples_inside(tmp_path, python_samples, capsys):
    (tmp_path / "demo" / "eval" / "reft").mkdir(parents=True)
    inside = tmp_path / "demo" / "eval" / "reft" / "test-samples.jsonl"
    inside.write_bytes(python_samples.read_bytes())
    assert main(["review", str(tmp_path / "demo"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune review: error: ") and err.count("\n") == 1 and str(inside) in err


@pytest.mark.parametrize("options, message", [
    (["--reviewers", ""], "--reviewers needs at least one name"),
    (["--reviewers", "alice,bob", "--overlap", "3"], "--overlap 3: each record can go to 1 to 2 reviewers"),
    (["--reviewers", "alice,bob", "--adjudicator", "carol"], "--adjudicator 'carol' is not one of the reviewers"),
    (["--reviewers", "alice,al ice"], "reviewer name 'al ice'"),
    (["--overlap", "2"], "--overlap needs --reviewers"),
    (["--host", "0.0.0.0"], "--host 0.0.0.0 is not loopback: give --reviewers"),
])
def test_each_bad_team_option_is_one_line_and_exit_2(python_samples, capsys, options, message):
    assert main(["review", str(python_samples), "--no-browser", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune review: error: ") and message in err and err.count("\n") == 1
    assert not python_samples.with_name("test-samples.jsonl.review.jsonl").exists()


def start_team(path, *options) -> tuple[subprocess.Popen, dict[str, str], list[str]]:
    """A team's server: (process, reviewer -> link, the lines printed until the links)."""
    process = subprocess.Popen([sys.executable, "-m", "reftune.cli", "review", str(path), "--no-browser", *options],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    links, printed = {}, []
    for line in process.stdout:
        printed.append(line)
        found = re.search(r"review: (\w+): (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        if found:
            links[found.group(1)] = found.group(2)
        if len(links) == 2:
            return process, links, printed
    raise AssertionError(f"the server exited with {process.wait()}: {''.join(printed)}")


@pytest.mark.slow
def test_a_team_gets_one_private_link_each_and_no_token_reaches_the_log(python_samples):
    process, links, printed = start_team(python_samples, "--reviewers", "alice,bob", "--overlap", "2")
    try:
        base = links["alice"].split("?")[0]
        assert httpx.get(base, timeout=30).status_code == 403
        alice = httpx.Client(follow_redirects=True, timeout=30)
        assert alice.get(links["alice"] + "&filter=wrong").status_code == 200  # the cookie, then the page
        token = re.search(r'"X-Reftune-Token": "([^"]+)"', alice.get(base).text.replace("&#34;", '"')).group(1)
        assert alice.post(base + "record/1/sample/0/accept", headers={"X-Reftune-Token": token}).status_code == 200
    finally:
        out = stop(process)
    secrets_given = [link.split("token=")[1] for link in links.values()]
    assert not any(secret in out for secret in secrets_given)  # the access log shows each request, no token
    assert 'GET /?filter=wrong HTTP/1.1" 303' in out and "GET /?token=[hidden]" not in out
    assert "alice reviewed 1 of 5, bob reviewed 0 of 5" in out
    lines = python_samples.with_name("test-samples.jsonl.review.jsonl").read_text().splitlines()
    assert '"reviewer": "alice"' in lines[0]
