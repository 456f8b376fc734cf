#!/usr/bin/env python3
"""Run a command under exactly the seccomp filter a systemd unit's ``SystemCallFilter=`` lines build.

    python3 scripts/unit_seccomp.py systemd/edgevid.service -- edgevid classify clip.avi

The unit file is the source of truth: its ``SystemCallFilter=`` lines are read in order, groups
(``@system-service``...) are resolved by this machine's own ``systemd-analyze syscall-filter``, and
the allow/deny arithmetic is systemd's (an allow list starts from ``@default``; ``~`` removes from
it, a later plain line adds back). The filter is loaded with libseccomp (through ctypes: the library
systemd itself links) with systemd's default action, killing the process on a denied call, and is
inherited by the command we exec. A denied call therefore ends the command with SIGSYS (exit 159
from a shell, -31 from Python) exactly as it would under systemd.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_TRAP = 0x00030000  # --trap: SIGSYS with the syscall in siginfo (`strace -f -e signal=SIGSYS` names it)


def filter_lines(unit: Path) -> list[str]:
    """The values of every ``SystemCallFilter=`` line of the unit's [Service] section, in order."""
    values, section = [], None
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Service]" and line.startswith("SystemCallFilter="):
            values.append(line.split("=", 1)[1].strip())
    return values


def systemd_groups() -> dict[str, list[str]]:
    """Every ``@group`` and its members (names and nested groups), as this machine's systemd defines them."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        raise RuntimeError("systemd-analyze is not installed")
    out = subprocess.run([exe, "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for raw in out.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw.startswith((" ", "\t")):
            current = line if line.startswith("@") else None
            if current:
                groups[current] = []
        elif current:
            groups[current].append(line)
    return groups


def expand(name: str, groups: dict[str, list[str]]) -> set[str]:
    """A syscall name, or a group resolved recursively to its syscall names."""
    if not name.startswith("@"):
        return {name}
    if name not in groups:
        raise ValueError(f"unknown syscall group {name}")
    found: set[str] = set()
    for member in groups[name]:
        found |= expand(member, groups)
    return found


def resolve(lines: list[str], groups: dict[str, list[str]]) -> tuple[bool, set[str]]:
    """``(allow_list, names)`` after applying the lines the way systemd does."""
    allow_list: bool | None = None
    names: set[str] = set()
    for value in lines:
        invert = value.startswith("~")
        items = value.lstrip("~").split()
        if allow_list is None:
            allow_list = not invert
            if allow_list:
                names |= expand("@default", groups)
        for item in items:
            syscalls = expand(re.sub(r":.*$", "", item), groups)  # drop a ":errno" suffix
            if invert == allow_list:
                names -= syscalls
            else:
                names |= syscalls
    if allow_list is None:
        raise ValueError("the unit has no SystemCallFilter= line")
    return allow_list, names


def load(allow_list: bool, names: set[str], deny: int = SCMP_ACT_KILL_PROCESS) -> None:
    """Install the filter in this process (inherited across exec); systemd's kill-the-process default."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    default, rule = (deny, SCMP_ACT_ALLOW) if allow_list else (SCMP_ACT_ALLOW, deny)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError("seccomp_init failed")
    for name in sorted(names):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == -1:  # not a syscall on this architecture (systemd skips those too)
            continue
        rc = lib.seccomp_rule_add(ctx, rule, nr, 0)
        if rc < 0 and nr >= 0:
            raise OSError(-rc, f"seccomp_rule_add({name}) failed")
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        raise OSError(-rc, "seccomp_load failed")


def available() -> str | None:
    """Why the filter cannot be built here, or None when it can."""
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed (it resolves the unit's @groups)"
    if not (ctypes.util.find_library("seccomp") or Path("/lib/x86_64-linux-gnu/libseccomp.so.2").exists()):
        return "libseccomp is not installed"
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 3 or "--" not in argv:
        print("usage: unit_seccomp.py [--trap] UNIT -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    trap = "--trap" in argv[: argv.index("--")]
    if trap:
        argv = [a for i, a in enumerate(argv) if a != "--trap" or i > argv.index("--")]
    split = argv.index("--")
    unit, command = Path(argv[1]), argv[split + 1 :]
    allow_list, names = resolve(filter_lines(unit), systemd_groups())
    load(allow_list, names, SCMP_ACT_TRAP if trap else SCMP_ACT_KILL_PROCESS)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
