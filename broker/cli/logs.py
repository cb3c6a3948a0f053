"""Baton's log lines on stderr, cheap enough to write one per trigger.

At saturation a worker writes one INFO line per dispatch, and Python's logging cost 9%
of its CPU there: per record, `os.getpid()` and the thread's name for fields the format
never shows, a walk up the stack for the caller's file and line (also not shown), and
a write and a flush. On this VM each of those system calls is dear. So:
- the fields the format does not show are not gathered (the switches the logging
  HOWTO names under "Optimization");
- lines logged on the event loop's thread wait for the end of the loop's turn and go
  out in one write (a burst's hundred dispatches that end in one turn: one write). A
  line at WARNING or above, or logged from another thread, goes at once, with any
  waiting before it, so nothing is reordered and no error waits;
- the text of a line's time is made once a second (`Lines`), not once a line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Lines(logging.Formatter):
    """`FORMAT`, the text of the time (to the second) made once for each second."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads read it whole

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if int(record.created) != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (int(record.created), text)
        return f"{text},{int(record.msecs):03d}"  # as the default_msec_format writes it


class TurnLines(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines of one event-loop turn together."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(Lines())
        self._waiting: list[str] = []
        self._scheduled = False
        # The loop last seen running, and its thread: `asyncio.get_running_loop` makes a
        # system call (getpid) each time, 2.5% of a worker's CPU at saturation.
        self._seen: tuple[int, asyncio.AbstractEventLoop] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        loop = self._loop()
        with self.lock:  # type: ignore[union-attr]
            self._waiting.append(line)
        if loop is None or record.levelno >= logging.WARNING:
            self.write_waiting()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.write_waiting)

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop running on this thread, if any."""
        thread, seen = threading.get_ident(), self._seen
        if seen is not None and seen[0] == thread and seen[1].is_running():
            return seen[1]  # one loop runs on a thread at a time
        loop = _running_loop()
        self._seen = None if loop is None else (thread, loop)
        return loop

    def write_waiting(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = False
            lines, self._waiting = self._waiting, []
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:  # a closed or full stderr: as logging itself does
                self.handleError(logging.makeLogRecord({"msg": "".join(lines)}))

    def flush(self) -> None:
        self.write_waiting()
        super().flush()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def configure(verbose: bool) -> None:
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller's file and line: the format shows neither
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT,
                        handlers=[TurnLines()])  # fmt: skip
    # One line per HTTP request to a target is noise; Baton logs each dispatch itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
