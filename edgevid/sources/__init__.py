"""Frame sources for the daemon: camera, file, stream or pipe, with timeouts, reconnects and pacing.

- :mod:`.base`: the frame handed over (:class:`~.base.Captured`), where it goes (:class:`~.base.Sink`),
  the counters, a :class:`~.base.Kind`;
- :mod:`.kinds`: the registry of kinds, one module each (:mod:`.camera`, :mod:`.stream`,
  :mod:`.pipe`, :mod:`.file`);
- :mod:`.reader`: one opened capture read, timed, slotted; :mod:`.source`: the thread that
  reopens it with backoff.

Import from the submodules: this package imports nothing itself, so ``config`` can read the pipe
formats from :mod:`.pipe` without loading the rest.
"""
