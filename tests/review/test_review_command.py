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
from review_inputs import python_samples  # noqa: F401 (fixtures)


def test_a_missing_path_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["review", str(tmp_path / "missing.jsonl"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reftune review: error: ") and "does not exist" in err and err.count("\n") == 1


def test_only_loopback_addresses_pass_without_a_warning():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.4", "::", "example.com"]))
    assert host_warning("127.0.0.1") is None and "not loopback" in host_warning("0.0.0.0")


def start(path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "reftune.cli", "review", str(path), "--no-browser"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    for line in process.stdout:
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
