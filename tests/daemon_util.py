"""The daemon test helpers live in tools.probe (shared with the soak test and the benchmarks)."""

from tools.probe import (
    DaemonProbe,
    Subscriber,
    curve_keys,
    free_port,
    proc_sample,
    start_daemon,
    stop_daemon,
    write_config,
)

__all__ = [
    "DaemonProbe",
    "Subscriber",
    "curve_keys",
    "free_port",
    "proc_sample",
    "start_daemon",
    "stop_daemon",
    "write_config",
]
