"""The Interpreter's sandbox over its life: which kind, started early, replaced when it must be, ended when idle.

Like a Code Interpreter session, a sandbox lives across asks (follow-ups see earlier variables) but not forever:
after ``Settings.idle_minutes`` without use it is shut down — locally or on the gateway — and the next ask
starts a fresh one and tells the model that earlier variables are gone. A change of a limit the sandbox was
started with (memory, network…) needs a new sandbox too; a per-ask time limit does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

from ..core.executor import Executor
from ..core.settings import GATEWAY_TOKEN_ENV, Limits, Settings

#: How often the idle watcher looks.
IDLE_POLL_S = 5.0


def make_executor(settings: Settings, user_dir: str | Path | None) -> Executor:
    """A sandbox for these settings: on the configured Enterprise Gateway, else on this machine."""
    if settings.gateway_url:
        from ..sandbox.gateway import GatewaySandbox

        gateway: Executor = GatewaySandbox(
            settings.limits,
            user_dir,
            url=settings.gateway_url,
            # Settings(...) made in Python does not read the environment: the token is still only ever there.
            token=settings.gateway_token or os.environ.get(GATEWAY_TOKEN_ENV) or None,
            kernel_name=settings.gateway_kernel,
        )
        return gateway
    from ..sandbox import Sandbox

    return Sandbox(settings.limits, user_dir)


class ExecutorSlot:
    """Holds at most one executor: started on demand or ahead of time, shut down after ``idle_s``."""

    def __init__(self, make: Callable[[], Executor], idle_s: float, *, owned: bool = True) -> None:
        self._make = make
        self.idle_s = idle_s
        # An executor handed to the Interpreter belongs to the caller: it is restarted, never closed, here.
        self._owned = owned
        self._executor: Executor | None = None
        self._starting: Future[Executor] | None = None
        self._lock = threading.Lock()
        self._last_used = time.monotonic()
        self._had_one = False
        self.expired = False  # an earlier sandbox ended (idle): the next ask's model must be told
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._busy = 0
        # The latest per-ask limits (time, output sizes): an executor still starting in the background was made
        # with the settings of its start, and gets these when it is taken.
        self._limits: Limits | None = None

    def prestart(self) -> None:
        """Start the executor in the background, so the first ask does not wait for it (warm pool of one)."""
        with self._lock:
            if self._executor is not None or self._starting is not None:
                return
            starting: Future[Executor] = Future()
            self._starting = starting

        def start() -> None:
            try:
                starting.set_result(self._make())
            except BaseException as exc:  # handed to whoever takes the executor
                starting.set_exception(exc)
            finally:
                # jupyter_client ran its coroutines on an event loop it made for this thread; the thread
                # ends here, so close the loop instead of leaking its sockets.
                with contextlib.suppress(RuntimeError):
                    asyncio.get_event_loop_policy().get_event_loop().close()

        threading.Thread(target=start, name="ci_magic-prestart", daemon=True).start()

    def get(self) -> Executor:
        """The executor, started (or taken from the background start) when there is none."""
        with self._lock:
            starting, self._starting = self._starting, None
        if self._executor is None:
            self._executor = self._adopt(starting.result()) if starting is not None else self._make()
            self._had_one = True
            self._watch()
        self._last_used = time.monotonic()
        return self._executor

    @property
    def current(self) -> Executor | None:
        """The executor if there is one already (a background start that has finished counts), else None."""
        with self._lock:
            starting = self._starting
            if (
                self._executor is None
                and starting is not None
                and starting.done()
                and starting.exception() is None
            ):
                self._executor, self._starting = self._adopt(starting.result()), None
                self._had_one = True
        if self._executor is not None:
            self._watch()
        return self._executor

    def settled(self) -> Executor | None:
        """Like :attr:`current`, but a background start still in progress is waited for (a failed one counts as
        none here; :meth:`get` raises its error)."""
        with self._lock:
            starting = self._starting if self._executor is None else None
        if starting is not None:
            with contextlib.suppress(Exception):
                starting.result()
        return self.current

    def set_limits(self, limits: Limits) -> None:
        """Limits that do not need a new sandbox (time, output, transfer sizes), for the next runs; an executor
        still starting gets them when it is taken."""
        with self._lock:
            self._limits = limits
            executor = self._executor
        if executor is not None:
            executor.set_limits(limits)

    def _adopt(self, executor: Executor) -> Executor:
        """An executor started in the background, with the limits set since its start began."""
        if self._limits is not None:
            executor.set_limits(self._limits)
        return executor

    def drop(self) -> None:
        """End the executor now (a started or starting one); the next :meth:`get` starts a fresh one."""
        with self._lock:
            starting, self._starting = self._starting, None
            executor, self._executor = self._executor, None
            self._limits = None  # the next executor is made from the settings of its own start
        if starting is not None:
            with contextlib.suppress(Exception):  # a failed prestart has nothing to close
                starting.result().close()
        if executor is not None:
            if self._owned:
                executor.close()
            else:
                executor.restart()

    def close(self) -> None:
        self._stop.set()
        if self._owned:
            self.drop()
        else:
            self._executor = None  # the caller's: theirs to close

    def _watch(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._expire_idle, name="ci_magic-idle", daemon=True)
            self._watcher.start()

    @contextlib.contextmanager
    def using(self) -> Iterator[Executor]:
        """The executor, kept from expiring while the block runs (an ask may take longer than ``idle_s``)."""
        with self.held():
            yield self.get()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Keep the executor (one taken with :meth:`get` inside the block) from expiring while the block runs."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._last_used = time.monotonic()

    def _expire_idle(self) -> None:
        while not self._stop.wait(min(IDLE_POLL_S, self.idle_s)):
            idle = time.monotonic() - self._last_used > self.idle_s
            if self._executor is not None and idle and not self._busy:
                self.drop()
                self.expired = True
                # jupyter_client made an event loop on this thread to shut the kernel down: close it.
                with contextlib.suppress(RuntimeError):
                    asyncio.get_event_loop_policy().get_event_loop().close()
