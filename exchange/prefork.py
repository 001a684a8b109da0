"""Several server processes over one listening socket, forked from a parent that has already
imported the code (as gunicorn's `--preload` does).

uvicorn's own `--workers` starts each worker with a fresh interpreter that imports everything
again: about 70 MB each, and the supervising parent 50 MB more. Forked children share the
parent's imported modules page by page until they write to them, so two workers cost little
more than one. Nothing that holds a connection or a thread exists before the fork: each child
builds its own app, and its store connects in the app's lifespan.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STARTUP_FAILED = 3  # a child's exit status when its app did not start (uvicorn's own code)


def run(workers: int, sock: socket.socket, serve: Callable[[socket.socket], bool]) -> int:
    """Fork `workers` children that each call `serve(sock)` (True once it served and stopped,
    False when its app did not start); replace a child that dies; stop them all on SIGTERM or
    SIGINT. Return the exit status: 0 after a stop, STARTUP_FAILED when a child could not
    start (the others are stopped: a store that cannot be reached fails every one)."""
    gc.collect()
    gc.freeze()  # what the parent built stays out of the children's collections: not copied
    children: dict[int, float] = {}
    stopping = False

    def fork() -> None:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code (its finally blocks)
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)  # the server installs its own
                code = 0 if serve(sock) else STARTUP_FAILED
            except SystemExit as exc:  # uvicorn's own way out of a failed start
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("a server process failed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for _ in range(workers):
            fork()
        while children:
            pid, code = os.wait()
            started = children.pop(pid, time.monotonic())
            if stopping:
                continue
            if os.waitstatus_to_exitcode(code) == STARTUP_FAILED:
                log.error("a server process could not start; stopping the others")
                status = STARTUP_FAILED
                stop(signal.SIGTERM, None)
                continue
            log.warning("server process %d ended (%s); starting another", pid,
                        _ending(code))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # not in a tight loop
            fork()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        gc.unfreeze()
    return status


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile: it is reaped next
        os.kill(pid, signum)


def _ending(code: int) -> str:
    if os.WIFSIGNALED(code):
        return f"signal {signal.Signals(os.WTERMSIG(code)).name}"
    return f"exit status {os.waitstatus_to_exitcode(code)}"
