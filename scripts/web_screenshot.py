"""README's picture of the web page: two camera-like ffmpeg pipe sources (a moving test pattern and
a still, noisy grey wall) in the real daemon, shot by headless Chromium once both timelines fill.

    EDGEVID_MODEL_DIR=... .venv/bin/python scripts/web_screenshot.py docs/web-page.png

Uses the browser test's DevTools driver (tests/test_web.py ``Chromium``): one driver, not two.
No frame of a dataset is in the picture.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_web import Chromium  # noqa: E402

from tools.probe import free_port, start_daemon, stop_daemon  # noqa: E402

PIPE = 'kind = "pipe"\npixel_format = "bgr24"\nwidth = 320\nheight = 240\nfps = 15\n'
SOURCES = {
    "desk": "testsrc2=size=320x240:rate=15",
    "shelf": "color=c=0x506070:size=320x240:rate=15 -vf noise=alls=8:allf=t",
}
READY = (
    "(() => { const tl = [...document.querySelectorAll('.timeline')];"
    " const live = [...document.querySelectorAll('.snapshot')];"
    " return tl.length == 2 && tl.every(t => +t.dataset.points > 50) && live.every(i => i.naturalWidth > 0); })()"
)


def wait_served(port: int, timeout: float = 60) -> None:
    """The page answers (the daemon is up), so the browser opens a page and not an error."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the web page on port {port} did not answer within {timeout:g} s")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/web-page.png")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "edgevid.toml")
        text = "".join(
            f'[[sources]]\nid = "{sid}"\n{PIPE}'
            f'uri = "ffmpeg -loglevel error -re -f lavfi -i {src} -f rawvideo -pix_fmt bgr24 -"\n\n'
            for sid, src in SOURCES.items()
        )
        config.write_text(
            text + f'[publish]\nendpoint = "tcp://127.0.0.1:{free_port()}"\n\n[web]\nlisten = "127.0.0.1:{port}"\n'
        )
        proc = start_daemon(config)
        browser = None
        try:
            wait_served(port)
            browser = Chromium(f"http://127.0.0.1:{port}/")

            async def shoot() -> bytes:
                await browser.open()
                try:
                    await browser.until(READY, 120, "both timelines and live views")
                    await browser.call(
                        "Emulation.setDeviceMetricsOverride", width=1100, height=1560, deviceScaleFactor=1, mobile=False
                    )
                    await asyncio.sleep(1.5)
                    return base64.b64decode((await browser.call("Page.captureScreenshot", format="png"))["data"])
                finally:
                    await browser.close()

            out.write_bytes(asyncio.run(shoot()))
        finally:
            if browser is not None:
                browser.kill()
            stop_daemon(proc)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
