"""A function run in a long-lived worker process under a time limit: the caller waits at most
``timeout_s`` for each reply and on time-out kills the worker, which the next call replaces.

Why a process. A function that hangs inside one C call that holds the GIL (sympy computing a huge
integer, a user's reward stuck in a native library) gives neither ``signal.alarm`` nor a watchdog
thread control back; killing a process always works, from any thread. On Linux the worker is forked:
a restart costs milliseconds and the worker sees the modules exactly as loaded (monkeypatches too,
which the tests rely on). Elsewhere fork is unsafe (macOS) or missing (Windows), so it is spawned
(the function must then be importable): seconds to start, but only once and after each time-out. A
call costs one pipe round trip (~0.1 ms) on top of the function's own time. Calls from several
threads take turns on the one worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection

START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
STARTUP_LIMIT_S = 120.0  # a spawned worker imports its modules before it is ready; not part of timeout_s


def _serve(conn: Connection, parent_end: Connection, fn: Callable, setup: Callable | None, describe: bool) -> None:
    """Worker loop: receive argument tuples, reply ("ok", result) or ("error", description) until the
    parent hangs up."""
    parent_end.close()  # our copy of the parent's end, closed so that the parent's death reads as EOF here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills this worker
    if setup is not None:
        setup()
    conn.send("ready")
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {str(exc)[:300]}" if describe else type(exc).__name__)
        try:
            conn.send(reply)
        except Exception as exc:  # a result that cannot be pickled
            conn.send(("error", f"returned an object that cannot be sent back ({type(exc).__name__})"))


class Worker:
    """Calls ``fn`` in this Python process's worker for it, started on first use. ``setup`` runs in
    the worker before its first call; ``describe``: reply with the exception's message (off where
    formatting it could itself hang, e.g. a huge sympy expression)."""

    def __init__(self, fn: Callable, name: str, setup: Callable | None = None, describe: bool = True) -> None:
        self.fn, self.name, self.setup, self.describe = fn, name, setup, describe
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        _WORKERS.add(self)

    def call(self, args: tuple, timeout_s: float) -> tuple[str, object]:
        """``("ok", result)``, ``("error", description)`` or ``("timeout", None)``."""
        with self._lock:
            try:
                conn = self._conn if self._conn is not None else self._start()
                conn.send(args)
                if not conn.poll(timeout_s):
                    self._stop()
                    return "timeout", None
                return conn.recv()
            except Exception as exc:  # the worker died (out of memory, killed) or could not start: count it, retry
                self._stop()
                return "error", f"the {self.name} worker failed ({type(exc).__name__})"
            except BaseException:  # interrupted mid-request: the reply would be out of step with the next request
                self._stop()
                raise

    def _start(self) -> Connection:
        ctx = multiprocessing.get_context(START_METHOD)
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(
            target=_serve,
            args=(child_end, parent_end, self.fn, self.setup, self.describe),
            daemon=True,
            name=self.name,
        )
        process.start()
        child_end.close()
        self._process, self._conn = process, parent_end
        if not parent_end.poll(STARTUP_LIMIT_S) or parent_end.recv() != "ready":
            raise RuntimeError(f"{self.name} worker did not start")
        return parent_end

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def shutdown(self) -> None:
        """Stop the worker now (it also stops when Python exits); the next call starts another."""
        with self._lock:
            self._stop()

    def _forget_after_fork(self) -> None:
        """In a forked child the worker and the lock belong to the parent: drop them, a new one starts on use."""
        self._lock = threading.Lock()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None


_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()


def _forget_all_after_fork() -> None:
    for worker in list(_WORKERS):
        worker._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_after_fork)
