"""The web page the daemon serves (``[web] listen``): live view, label, timeline, events, counters
and the model page, every asset shipped in ``static/``.

- :mod:`.snapshot`: the live view's latest-JPEG slot, fed on the source threads (no aiohttp);
- :mod:`.state`: the page's bounded buffers, fed on the event loop (no aiohttp);
- :mod:`.server`: the aiohttp server, an output of :mod:`edgevid.outputs` (imported only when on).
"""
