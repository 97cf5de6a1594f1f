"""Programs are model output: each test is one kind of hostile program from the foundation issue."""
import os
import socket
import textwrap
import time

import pytest

from reftune.execution import SANDBOX_UID_BASE, ProgramRunner, run_programs

ROOT = os.geteuid() == 0
# Reaching `os` without importing it, as an attacker would once imports are refused.
GET_OS = "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__"


def program(body: str) -> str:
    return "def solution():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ")


def sandbox_processes() -> list[int]:
    """The live sandbox processes this test process started: their uids are its own (the pool gives
    each caller process its own range of 64), so other processes' sandboxes (another test worker's)
    are not counted."""
    own = SANDBOX_UID_BASE + (os.getpid() % 4096) * 64
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as status:
                uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue
        if own <= uid < own + 64:
            pids.append(int(entry))
    return pids


def test_values_errors_and_order_come_back():
    results = run_programs([program("return 6 * 7"), program("return 1 / 0"), "x = 1",
                            "def solution(:", program("from fractions import Fraction\nreturn Fraction(1, 4)"),
                            program("return 'b'"), program("return [1, 2]"), program("return None")])
    assert [r.value for r in results] == [42, None, None, None, 0.25, "b", "[1, 2]", None]
    assert results[1].error == "ZeroDivisionError: division by zero"
    assert results[2].error == "the program defines no solution() function"
    assert results[3].error.startswith("SyntaxError")
    assert results[7].ok


def test_bad_input_never_raises():
    results = run_programs([None, 42, "x" * 100_000, ""])
    assert [r.value for r in results] == [None] * 4
    assert "must be a str" in results[0].error and "too long" in results[2].error


def test_a_program_cannot_write_files(tmp_path):
    target = tmp_path / "pwned"
    os.chmod(tmp_path, 0o777)
    results = run_programs([
        program(f"open({str(target)!r}, 'w').write('x')\nreturn 1"),
        program(f"{GET_OS}['open']({str(target)!r}, 0o101)\nreturn 1"),
        program(f"{GET_OS}['mkdir']({str(tmp_path / 'dir')!r})\nreturn 1"),
    ])
    assert all(r.value is None and "not allowed" in r.error for r in results)
    assert os.listdir(tmp_path) == []


def test_a_program_cannot_start_processes(tmp_path):
    marker = tmp_path / "ran"
    results = run_programs([
        program(f"import os\nos.system('touch {marker}')"),
        program(f"{GET_OS}['system']('touch {marker}')\nreturn 1"),
        program(f"return {GET_OS}['fork']()"),
        program("import subprocess\nreturn subprocess.run(['true'])"),
    ])
    assert all(r.value is None for r in results)
    assert not marker.exists()


def test_a_program_cannot_open_a_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        results = run_programs([
            program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}))\nreturn 1"),
            program("import urllib.request\nreturn urllib.request.urlopen('http://1.1.1.1').status"),
        ])
        with pytest.raises(socket.timeout):
            server.accept()
    assert all(r.value is None for r in results)


def test_a_program_cannot_read_the_callers_environment(monkeypatch):
    monkeypatch.setenv("REFTUNE_SECRET", "hunter2")
    results = run_programs([
        program(f"return str(dict({GET_OS}['environ']))"),
        program(f"return {GET_OS}['getenv']('REFTUNE_SECRET')"),
        program(f"return open('/proc/{os.getpid()}/environ').read()"),
    ])
    assert all("hunter2" not in str(r.value) for r in results)
    assert results[0].value in ("{}", "{'LC_CTYPE': 'C.UTF-8'}")  # Python's own locale coercion


def test_a_program_cannot_exhaust_memory():
    [result] = run_programs([program("return len(bytearray(8 * 1024 ** 3))")])
    assert result.value is None and result.error == "MemoryError"


def test_a_program_cannot_outlive_its_timeout_even_ignoring_signals():
    hostile = program("""
        sig = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]
        import_signal = sig.__init__.__globals__['sys'].modules['signal']
        for s in (import_signal.SIGTERM, import_signal.SIGINT, import_signal.SIGALRM):
            import_signal.signal(s, import_signal.SIG_IGN)
        while True:
            pass
    """)
    started = time.monotonic()
    results = run_programs([hostile, program("return 10 ** 10 ** 9"), program("return 1")], timeout=1.0)
    assert time.monotonic() - started < 3.5
    assert [r.error for r in results[:2]] == ["timeout", "timeout"] and results[2].value == 1
    if ROOT:
        time.sleep(0.2)
        assert sandbox_processes() == []


def test_a_program_cannot_kill_or_hang_the_caller():
    results = run_programs([
        program(f"import os\nos.kill({os.getpid()}, 9)"),
        program(f"{GET_OS}['kill']({os.getpid()}, 19)\nreturn 1"),
        program(f"{GET_OS}['kill']({os.getppid()}, 9)\nreturn 1"),
        program(f"{GET_OS}['write'](3, b'x' * 10_000_000)\nreturn 1"),
    ])
    assert all(r.value is None for r in results)
    assert run_programs([program("return 2")])[0].value == 2  # and the pool still works


def test_a_program_cannot_affect_another_programs_result():
    tamper = program("""
        import math
        math.pi = 3
        __builtins__["abs"] = lambda x: 0
        return 1
    """)
    forge = program(f"{GET_OS}['write'](3, b'{{\"value\": 99}}{{\"value\": 99}}')\nreturn 5")
    check = program("import math\nreturn abs(-2) + math.pi")
    with ProgramRunner(num_workers=1) as runner:
        results = runner.run([tamper, forge, check, check])
    assert results[0].value == 1
    assert results[1].value is None  # the forger spoils only its own reply
    assert results[2].value == results[3].value == pytest.approx(2 + 3.141592653589793)


def test_programs_run_in_parallel_on_warm_workers():
    with ProgramRunner(num_workers=2) as runner:
        pids_before = [worker.process.pid for worker in runner._workers]
        started = time.monotonic()
        results = runner.run([program("while True: pass")] * 2, timeout=1.0)
        assert time.monotonic() - started < 1.9  # two 1 s timeouts side by side, not one after another
        assert [r.error for r in results] == ["timeout", "timeout"]
        runner.run([program("return 1")] * 20)
        assert [worker.process.pid for worker in runner._workers] == pids_before


@pytest.mark.skipif(not ROOT, reason="the OS layer (chroot, uid drop, network namespace) needs root")
class TestOperatingSystemLayer:
    """With the Python guards off, the kernel alone must still hold the line."""

    @pytest.fixture(scope="class")
    @classmethod
    def bare_runner(cls):
        with ProgramRunner(num_workers=1, python_guards=False) as runner:
            yield runner

    def run(self, runner, body):
        [result] = runner.run([program("import os, ctypes, struct\n" + textwrap.dedent(body))])
        return result

    def test_no_files_are_visible_or_writable(self, bare_runner):
        # fd 0 closed first: the fd limit leaves no room for the directory otherwise
        assert self.run(bare_runner, "os.close(0)\nreturn str(os.listdir('/'))").value == "[]"
        assert "FileNotFoundError" in self.run(bare_runner, "os.close(0)\nopen('/tmp/x', 'w')").error
        # the jail directory is unlinked: nothing can be created in it, even by its owner
        assert self.run(bare_runner, "os.mkdir('/x')").error.startswith("FileNotFoundError")

    def test_no_process_can_be_started(self, bare_runner):
        assert "BlockingIOError" in self.run(bare_runner, "return os.fork()").error

    def test_uid_is_unprivileged_and_the_caller_cannot_be_signalled(self, bare_runner):
        assert self.run(bare_runner, "return os.getuid()").value >= SANDBOX_UID_BASE
        error = self.run(bare_runner, f"os.kill({os.getpid()}, 0)").error
        assert error.startswith("PermissionError")

    def test_the_network_is_unreachable(self, bare_runner):
        errno = self.run(bare_runner, """
            libc = ctypes.CDLL(None, use_errno=True)
            os.close(0)  # the fd limit leaves no room for a socket otherwise
            fd = libc.socket(2, 1, 0)
            address = struct.pack('<H', 2) + struct.pack('>H', 80) + bytes([127, 0, 0, 1]) + bytes(8)
            if libc.connect(fd, address, 16) == 0:
                return 'connected'
            return ctypes.get_errno()
        """).value
        assert errno == 101  # ENETUNREACH: the namespace's loopback is down

    def test_memory_is_capped_by_rlimit(self, bare_runner):
        assert self.run(bare_runner, "return len(bytearray(2 * 1024 ** 3))").error == "MemoryError"


NOBODY_SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[2])!r})
from reftune.execution import ProgramRunner
programs = [
    "def solution():\\n    return 6 * 7",
    "def solution():\\n    " + {GET_OS!r} + "['open'](sys.argv[1], 0o101)\\n    return 1",
    "def solution():\\n    while True: pass",
]
with ProgramRunner(num_workers=1) as runner:
    guarded = runner.run(programs, timeout=1.0)
with ProgramRunner(num_workers=1, python_guards=False) as runner:
    [bare_fork] = runner.run(["import os\\ndef solution():\\n    return os.fork()"])
print(json.dumps([[r.value, r.error] for r in guarded + [bare_fork]]))
"""


@pytest.mark.skipif(not (ROOT and os.path.exists("/usr/bin/setpriv") and os.path.exists("/usr/bin/python3")),
                    reason="needs root to switch to an ordinary user, and a system python3")
def test_as_an_ordinary_user_the_sandbox_still_holds():
    import json
    import shutil
    import subprocess
    import tempfile

    shared = tempfile.mkdtemp(prefix="reftune-nobody-")  # pytest's tmp_path is closed to others
    os.chmod(shared, 0o777)
    try:
        script = NOBODY_SCRIPT.replace("sys.argv[1]", repr(os.path.join(shared, "pwned")))
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "/usr/bin/python3", "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        ok, write, loop, bare_fork = json.loads(out.stdout)
        assert ok == [42, None]
        assert write[0] is None and "not allowed" in write[1]
        assert loop == [None, "timeout"]
        assert bare_fork[0] is None and "BlockingIOError" in bare_fork[1]  # RLIMIT_NPROC binds non-root
        assert os.listdir(shared) == []
    finally:
        shutil.rmtree(shared)


def test_programs_still_run_after_the_thread_that_started_the_pool_has_ended():
    """The zygotes die with the thread that forked them (PR_SET_PDEATHSIG): a web server's short-lived
    request thread must not take the pool down with it."""
    import threading

    made = []

    def start_and_run() -> None:
        made.append(ProgramRunner(num_workers=1))
        made.append(made[0].run(["def solution():\n    return 1"])[0].value)

    thread = threading.Thread(target=start_and_run)
    thread.start()
    thread.join()
    runner, first = made
    time.sleep(0.5)  # the kernel's signal to the zygote, had the thread forked it, lands by now
    assert first == 1
    assert [r.value for r in runner.run(["def solution():\n    return 2"])] == [2]
    runner.close()
