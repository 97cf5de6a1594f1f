"""`reftune serve` mistakes: one line, exit status 2."""
import socket

import pytest

from reftune.cli import main


def one_error_line(capsys, *args) -> str:
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reftune serve: error: ") and "Traceback" not in err
    return err


def test_a_port_in_use_or_out_of_range_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert "Address already in use" in one_error_line(capsys, "tiny", "--port", str(port))
    assert "--port must be in 0..65535" in one_error_line(capsys, "tiny", "--port", "70000")
    assert "serve needs a model" in one_error_line(capsys)


@pytest.mark.slow
def test_an_unknown_model_is_one_line(capsys, tmp_path):
    assert "unknown model" in one_error_line(capsys, str(tmp_path / "no-such-model"), "--port", "0")
