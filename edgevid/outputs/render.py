"""The text form of edgevid's messages: what ``edgevid subscribe`` prints and the live check shows."""

from __future__ import annotations

import time


def render(msg: dict, now: float | None = None) -> str:
    """One human line per message: local time received, then what it says (every status counter)."""

    stamp = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    if msg.get("type") == "prediction":
        top = ", ".join(f"{s['label']} {s['score']:.2f}" for s in msg["top"])
        where = ""
        if msg.get("media_start") is not None:
            loop = f", pass {msg['loop'] + 1}" if msg.get("loop") else ""
            where = f" [{msg['media_start']:.2f}-{msg['media_end']:.2f} s{loop}]"
        cost = (
            f"{msg.get('frames', '?')} frames, {msg.get('gaps', 0)} gaps, {msg['new_frames']} new, "
            f"{msg['latency']['capture_to_publish_ms']:.0f} ms"
        )
        if msg.get("label") == "unknown":
            top = f"unknown (below min_score: {top})"
        elif msg.get("label") == "idle":
            top = "idle (still: the motion gate kept the window from the models)"
        return f"{stamp} {msg['source']} #{msg['seq']}{where}: {top} ({cost})"
    if msg.get("type") == "event":
        score = "" if msg.get("score") is None else f", score {msg['score']:.2f}"
        return (
            f"{stamp} {msg['source']} event {msg['phase']} {msg['label']} ({msg['id']}): {msg['duration_s']:.1f} s, "
            f"best {msg['best_score']:.2f}{score}"
        )
    parts = []
    for s in msg.get("sources", []):
        skipped = ", ".join(f"{k} {v}" for k, v in sorted((s.get("skipped") or {}).items()))
        line = (
            f"{s['id']} {s['state']}: {s['fps_in']:.1f} fps in, {s['fps_processed']:.1f} processed, "
            f"frames {s['frames_in']}, sampled {s['sampled']}, extracted {s.get('extracted', '?')}, "
            f"dropped {s['dropped']}, predictions {s['predictions']}, "
            f"skipped {s['skipped_windows']}{f' ({skipped})' if skipped else ''}, reconnects {s['reconnects']}"
        )
        if s.get("motion") is not None:
            line += (
                f", {'moving' if s['motion'] else 'still'} (idle {s.get('idle_s', 0):.0f} s, "
                f"{s.get('idle_windows', 0)} idle windows, {s.get('gated_frames', 0)} frames gated)"
            )
        if s.get("loop"):
            line += f", loops {s['loop']}"
        if s.get("last_error"):
            line += f", last error: {s['last_error']}"
        parts.append(line)
    head = f"{stamp} status #{msg.get('seq', '?')} up {msg.get('uptime_s', 0):.0f} s"
    if msg.get("extract_ms_per_frame") is not None:
        head += f", {msg['extract_ms_per_frame']:.1f} ms/frame"
    if msg.get("overloaded"):
        head += f", OVERLOADED: {msg.get('overload')}"
    outputs = "; ".join(_output(name, o) for name, o in sorted((msg.get("outputs") or {}).items()))
    return head + ": " + "; ".join(parts) + (f" | outputs: {outputs}" if outputs else "")


def _output(name: str, o: dict) -> str:
    dropped = "" if o.get("dropped") is None else f", dropped {o['dropped']}"
    state = "up" if o.get("connected") else f"DOWN{': ' + o['last_error'] if o.get('last_error') else ''}"
    queued = f", queued {o['queued']}" if o.get("queued") else ""
    return f"{name} {state}, sent {o.get('sent', '?')}{dropped}{queued}, reconnects {o.get('reconnects', 0)}"
