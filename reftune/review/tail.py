"""The complete lines a JSON Lines file holds past the point already read, so that a big file can be
read a piece at a time and a growing one (an RL run's rollouts.jsonl) read again for its new rows
only. A last line without its newline is a row still being written, left for the next read, unless
it already parses as JSON (a file whose writer left the final newline out).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "rollouts.jsonl"
>>> _ = path.write_bytes(b'{"a": 1}\\n\\n{"a": 2')
>>> tail = Tail(path)
>>> tail.read()
[(1, b'{"a": 1}')]
>>> with open(path, "ab") as out:
...     _ = out.write(b'}\\n{"a": 3}')
>>> tail.grew(), tail.read(), tail.at_end
(True, [(3, b'{"a": 2}'), (4, b'{"a": 3}')], True)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

MARK_BYTES = 64  # the bytes kept from just before the point read: a file rewritten since no longer holds them


class Tail:
    """Where the reading of one file stands: the bytes taken in, the lines counted, and the file's
    size and time when it was last looked at."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.read_to = 0         # bytes taken in: every line before this point
        self.lines = 0           # lines taken in (blank ones too), for "line N of FILE"
        self.size = 0            # the file's size at the last read
        self.mark = b""          # the MARK_BYTES before read_to
        self.stamp = None        # (size, mtime, inode) at the last read
        self.open_line = False   # the last line taken had no newline yet (its newline is still to come)
        self.unfinished = 0      # bytes of a last line still being written, past read_to
        self.rewritten = False   # the file no longer holds what was read: it is followed no more

    @property
    def at_end(self) -> bool:
        """Everything the file held at the last read is taken in (a partial last line aside)."""
        return self.rewritten or self.read_to >= self.size - self.unfinished

    def grew(self) -> bool:
        """The file changed since the last read (its size, time or inode): only a stat."""
        try:
            found = os.stat(self.path)
        except OSError:
            return False
        return not self.rewritten and (found.st_size, found.st_mtime_ns, found.st_ino) != self.stamp

    def read(self, limit: int | None = None) -> list[tuple[int, bytes]]:
        """(line number, line) of the complete lines past the point read, about `limit` bytes of
        them (the line the limit cuts is read to its end); blank lines are counted, not returned."""
        with open(self.path, "rb") as source:
            found = os.fstat(source.fileno())
            self.stamp, self.size = (found.st_size, found.st_mtime_ns, found.st_ino), found.st_size
            if self.moved(source, found.st_size):
                self.rewritten = True
                return []
            source.seek(self.read_to)
            data = source.read(limit) if limit else source.read()
            if limit and data and not data.endswith(b"\n"):
                data += source.readline()  # finish the line the limit cut
        return self.take(data)

    def moved(self, source, size: int) -> bool:
        """The file is shorter than what was read, or the bytes before the point read changed (a
        resumed run rewrites its logs cut back to its checkpoint)."""
        if self.read_to == 0:
            return False
        if size < self.read_to:
            return True
        source.seek(self.read_to - len(self.mark))
        return source.read(len(self.mark)) != self.mark

    def take(self, data: bytes) -> list[tuple[int, bytes]]:
        """Split the bytes read into lines; keep the point read and the mark up to date."""
        if self.open_line and data.startswith(b"\n"):  # the newline of a line taken before it came
            data, self.read_to, self.mark = data[1:], self.read_to + 1, (self.mark + b"\n")[-MARK_BYTES:]
        self.open_line = False
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        if rest.strip() and whole_json(rest):  # at the end of the file: a row without its newline
            end, self.open_line = len(data), True
        self.unfinished = len(data) - end
        lines = data[:end].split(b"\n")
        if not self.open_line:
            lines.pop()  # what follows the last newline: nothing, or the unfinished line
        found = []
        for line in lines:
            self.lines += 1
            if line.strip():
                found.append((self.lines, line))
        self.read_to += end
        if end:
            self.mark = (self.mark + data[:end])[-MARK_BYTES:]
        return found


def whole_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True
