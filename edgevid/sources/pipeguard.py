"""Between the daemon and a pipe source's command: ``python -I -S pipeguard.py PARENT ARGV...``.

It leads the command's process group (its own session) and runs the command in it. The daemon
arms ``PR_SET_PDEATHSIG`` = SIGHUP on it, so when the daemon's source thread ends without
stopping it (the daemon SIGKILLed), it kills the whole group with SIGKILL, itself included: a shell
wrapper's children (``sh -c 'a & b'``) go too, not only the direct child. A process that leaves
the group (``setsid``) escapes it; under systemd the unit's cgroup still ends it.

Otherwise it is transparent: the group's SIGTERM (the daemon stopping the command) reaches the
command directly and the guard waits for it; its exit code, or the signal that killed it, is the
guard's own. Standard library only, and no ``site``: it starts in tens of milliseconds.
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, argv = int(sys.argv[1]), sys.argv[2:]
    signal.signal(signal.SIGHUP, lambda *_: os.killpg(0, signal.SIGKILL))  # the daemon is gone
    signal.signal(signal.SIGTERM, lambda *_: None)  # the command got it too: wait for its exit
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if os.getppid() != parent:  # gone before the handler was in place
        os.killpg(0, signal.SIGKILL)
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    guard = os.getpid()
    pid = os.fork()
    if pid == 0:  # the command: default signal handling, dies with the guard
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != guard:
            os._exit(1)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"cannot run {argv[0]!r}: {exc.strerror}\n".encode())
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(guard, sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main()
