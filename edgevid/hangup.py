"""SIGHUP at any moment of the daemon's life: the rule (:class:`Hangups`) and its handler.

The handler only counts. What a SIGHUP does depends on when it came, decided by
:meth:`Hangups.action` (a test drives it in-process):

- before the config was read (start-up, or the moments around an exec: SIGHUP stays blocked
  across the exec, so it is delivered once the new process has installed this handler): that
  read already answers it;
- after the config was read but before READY: remembered, and the daemon reloads once serving;
- while serving: reload now (after the preflight);
- while a reload is under way: the new process reads the config after it, which answers it;
- while stopping (SIGTERM): ignored, and logged.

Several SIGHUPs waiting together are one reload. This module imports nothing heavy, so
``edgevid run`` installs the handler before it imports the daemon or reads the config.
"""

from __future__ import annotations

import os
import signal
from typing import Callable

STARTING, SERVING, RELOADING, STOPPING = "starting", "serving", "reloading", "stopping"


class Hangups:
    """SIGHUPs received and answered; :meth:`handler` is the signal handler."""

    def __init__(self) -> None:
        self.received = 0  # SIGHUPs so far
        self.answered = 0  # how many of them a config read (or a refused reload) answered
        self.phase = STARTING
        self.wake: Callable[[], None] | None = None  # the event loop's callback, while it runs

    def handler(self, signum=None, frame=None) -> None:
        self.received += 1
        wake = self.wake
        if wake is not None:
            try:
                wake()
            except Exception:  # a closing loop: never raise into the code the signal interrupted
                pass

    def reading(self) -> int:
        """Call before reading the config; pass the token to :meth:`read` once it is read."""
        return self.received

    def read(self, token: int) -> None:
        """The config was read (or a reload refused) after the first ``token`` SIGHUPs."""
        self.answered = max(self.answered, token)

    def action(self) -> str:
        """What the SIGHUPs not yet answered ask now: ``none``, ``wait`` (starting: reload once
        serving), ``reload`` (serving), ``covered`` (a reload is under way: answered by the new
        process's read) or ``ignore`` (stopping). The last two count them answered."""
        if self.received <= self.answered:
            return "none"
        if self.phase == STARTING:
            return "wait"
        if self.phase == SERVING:
            return "reload"
        self.answered = self.received
        return "covered" if self.phase == RELOADING else "ignore"

    def install(self) -> None:
        """Handle SIGHUP from now on (main thread only), then unblock it: one that arrived while it
        was blocked (across an exec) is delivered here, before the config is read."""
        signal.signal(signal.SIGHUP, self.handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})

    def block(self) -> None:
        """Before an exec: a SIGHUP from here on waits, blocked, for the new process."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})


#: The daemon's one instance (the signal is per process).
HANGUPS = Hangups()


def close_on_exec() -> int:
    """Before an exec: mark every descriptor but stdin, stdout and stderr close-on-exec (a library's
    file opened without the flag, like TFLite's model file, would otherwise outlive the exec, one
    more copy per reload). Returns how many were inheritable."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, os.sysconf("SC_OPEN_MAX"))
    marked = 0
    for fd in fds:
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                os.set_inheritable(fd, False)
                marked += 1
        except OSError:  # closed meanwhile (the listing's own descriptor)
            pass
    return marked
