"""Run P-CoT programs (model output, so hostile) in isolated worker processes.

The only part of reftune that starts processes. pool.py is the caller's side (a warm pool, the
scheduler); sandbox.py is the worker's side and holds the isolation model in its docstring.

>>> run_programs(["def solution():\\n    return 6 * 7", "def solution():\\n    return 1 / 0"])
[ProgramResult(value=42, error=None), ProgramResult(value=None, error='ZeroDivisionError: division by zero')]
"""
from reftune.execution.pool import ProgramResult, ProgramRunner, run_programs
from reftune.execution.sandbox import SANDBOX_UID_BASE

__all__ = ["ProgramResult", "ProgramRunner", "SANDBOX_UID_BASE", "run_programs"]
