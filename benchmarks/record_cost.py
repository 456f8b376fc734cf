import time, tempfile, asyncio, resource
from pathlib import Path
import cv2, numpy as np
from edgevid.config import RecordConfig
from edgevid.messages import ModelIds
from edgevid.record import Recorder
cv2.setNumThreads(1)
clip = sorted(Path("/work/shared/data/jhmdb/golf").glob("*.avi"))[4]
cap = cv2.VideoCapture(str(clip)); frames = []
while True:
    ok, f = cap.read()
    if not ok: break
    frames.append(f)
for size in [(320, 240), (640, 480), (1280, 720)]:
    fr = [cv2.resize(f, size) for f in frames]
    tmp = Path(tempfile.mkdtemp())
    rec = Recorder(RecordConfig(enabled=True, dir=tmp / "r"), ["c"], ModelIds(extractor="e", head="h"), "m")
    ring = rec.rings["c"]
    # the source thread's cost per kept frame, without and with a clip open
    for mode in ("ring only", "clip open"):
        n, spent = 0, 0.0
        if mode == "clip open":
            rec.request("c", 20)
        t_wall = time.time()
        for i in range(300):
            f = fr[i % len(fr)]
            t0 = time.perf_counter()
            ring.offer(f, (mode == "clip open") * 100 + i * 0.1, t_wall + i * 0.1 * 0.05, None)  # every frame due (10 fps schedule)
            spent += time.perf_counter() - t0
            n += 1
        print(f"{size[0]}x{size[1]} {mode}: {spent / n * 1e3:.2f} ms per kept frame on the source thread")
    t0 = time.perf_counter()
    rec.close(); asyncio.run(rec.wait_closed())
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"  writer: {rec.writer.stats.frames_written} frames, dropped {rec.writer.stats.frames_dropped}; ffmpeg CPU so far {ch.ru_utime + ch.ru_stime:.2f} s total; clip {rec.writer.stats.bytes_written/1e3:.0f} kB")
