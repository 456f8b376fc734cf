"""Pipe source: frames read from a command's stdout (``rpicam-vid``, ``libcamera-vid``, ``ffmpeg``).

On Raspberry Pi OS Bookworm the camera module goes through libcamera, which OpenCV cannot open;
the camera apps (and ``ffmpeg`` for any other device) write raw or MJPEG frames to stdout instead.
:class:`PipeCapture` starts such a command and offers the few ``cv2.VideoCapture`` calls the live
reader uses (``grab``/``retrieve``/``get``/``release``), so a pipe is read, timed, stall-checked and
restarted by the same code as a camera or a stream (:class:`edgevid.sources.source.FrameSource`).

The command runs without a shell, in its own session (so stopping it reaches its whole process
group), under a small guard (:mod:`.pipeguard`) that leads that group. The guard has
``PR_SET_PDEATHSIG`` = SIGHUP, so when the thread that started it ends, even when the daemon itself
is killed with SIGKILL, it kills the whole group: a wrapper's children too, not only the direct
child. The source thread that starts it owns it for its whole life and kills it before returning,
so the signal never cuts a command that is still wanted.

The pure rules (bytes per frame, JPEG splitting, how an exit is told) are plain functions and
classes tested without a process.
"""

from __future__ import annotations

import ctypes
import math
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..capture import size_problem
from .base import Kind, Opened, SourceError

if TYPE_CHECKING:
    from ..config import SourceConfig

#: Raw layouts: (rows per frame as a multiple of the height, bytes per pixel of a row, channels, cv2
#: conversion to BGR or None). Planar YUV 4:2:0 is one ``height * 3 / 2`` x ``width`` byte plane.
RAW_FORMATS: dict[str, tuple[float, int, int, int | None]] = {
    "yuv420p": (1.5, 1, 1, cv2.COLOR_YUV2BGR_I420),  # I420: rpicam-vid --codec yuv420
    "nv12": (1.5, 1, 1, cv2.COLOR_YUV2BGR_NV12),
    "nv21": (1.5, 1, 1, cv2.COLOR_YUV2BGR_NV21),
    "yuyv422": (1, 2, 2, cv2.COLOR_YUV2BGR_YUYV),  # what most USB webcams send
    "bgr24": (1, 3, 3, None),
    "rgb24": (1, 3, 3, cv2.COLOR_RGB2BGR),
    "gray": (1, 1, 1, cv2.COLOR_GRAY2BGR),
}
#: Every ``pixel_format`` a pipe source accepts (``mjpeg``: a stream of whole JPEG images).
PIXEL_FORMATS = (*RAW_FORMATS, "mjpeg")
#: Formats whose chroma is shared by pixel pairs: width (and for 4:2:0 height) must be even.
EVEN_WIDTH = {"yuv420p", "nv12", "nv21", "yuyv422"}
EVEN_HEIGHT = {"yuv420p", "nv12", "nv21"}

#: A JPEG larger than this without its end marker means the stream is not MJPEG.
MAX_JPEG_BYTES = 32 << 20
#: Seconds between SIGTERM to the command's process group and SIGKILL.
TERM_GRACE_S = 1.0
#: stderr lines kept for ``last_error``.
STDERR_LINES = 3


def frame_bytes(pixel_format: str, width: int, height: int) -> int:
    """Bytes of one raw frame on the pipe (``frame_bytes("yuv420p", 640, 480) == 460800``)."""
    rows, bpp, _, _ = RAW_FORMATS[pixel_format]
    return int(rows * height) * width * bpp


def to_bgr(data: bytes | memoryview, pixel_format: str, width: int, height: int) -> np.ndarray | None:
    """One frame as OpenCV decodes video: BGR uint8 ``[height, width, 3]`` (None: not a JPEG)."""
    buf = np.frombuffer(data, np.uint8)
    if pixel_format == "mjpeg":
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    rows, _, channels, code = RAW_FORMATS[pixel_format]
    shape = (int(rows * height), width) if channels == 1 else (height, width, channels)
    frame = buf.reshape(shape)
    return frame if code is None else cv2.cvtColor(frame, code)


class RawFramer:
    """Cuts a byte stream into fixed-size frames."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"frame size must be > 0, got {size}")
        self.size = size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        n = len(self._buf) // self.size
        if not n:
            return []
        out = [bytes(self._buf[i * self.size : (i + 1) * self.size]) for i in range(n)]
        del self._buf[: n * self.size]
        return out

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not complete (left over when the command exits)."""
        return len(self._buf)


#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(image: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header, read before anything is decoded
    (None: no such header before the scan)."""
    pos = 2
    while pos + 4 <= len(image) and image[pos] == 0xFF:
        marker = image[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _SOF and pos + 9 <= len(image):
            return (image[pos + 7] << 8) | image[pos + 8], (image[pos + 5] << 8) | image[pos + 6]
        if marker == 0xDA:
            return None
        pos += 2 + ((image[pos + 2] << 8) | image[pos + 3])
    return None


class JpegSplitter:
    """Cuts an MJPEG byte stream (JPEG images back to back) into whole images.

    An image runs from its SOI marker (FF D8) to its EOI (FF D9). Header segments carry their
    length and are skipped by it (an EXIF thumbnail holds SOI/EOI of its own); in the
    entropy-coded data every FF byte is followed by 00 or a restart marker, so the first FF D9 after
    the start of scan is the end of the image. Bytes outside an image are dropped.
    """

    def __init__(self, max_bytes: int = MAX_JPEG_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._scan = -1  # where the entropy-coded data of the current image starts, once known
        self._pos = 2  # next header segment, while ``_scan`` is unknown
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            image = self._next()
            if image is None:
                break
            out.append(image)
        if len(self._buf) > self.max_bytes:  # no end in sight: not MJPEG, or a broken image
            self.dropped_bytes += len(self._buf)
            self._buf.clear()
            self._scan, self._pos = -1, 2
        return out

    @property
    def pending(self) -> int:
        """Bytes of an image begun but not complete."""
        return len(self._buf)

    def _next(self) -> bytes | None:
        buf = self._buf
        start = buf.find(b"\xff\xd8")
        if start < 0:
            keep = 1 if buf.endswith(b"\xff") else 0
            self.dropped_bytes += len(buf) - keep
            del buf[: len(buf) - keep]
            return None
        if start:
            self.dropped_bytes += start
            del buf[:start]
        if self._scan < 0:
            pos = self._pos
            while True:  # header segments: FF <marker> <length:2>, up to the start of scan (FF DA)
                if pos + 4 > len(buf):
                    self._pos = pos
                    return None
                if buf[pos] != 0xFF:
                    return self._resync()
                marker = buf[pos + 1]
                if marker == 0xFF:  # fill byte
                    pos += 1
                    continue
                if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
                    pos += 2
                    continue
                if marker == 0xD9:  # an image with no scan: nothing to decode
                    return self._resync(pos + 2)
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                if length < 2:
                    return self._resync()
                pos += 2 + length
                if marker == 0xDA:
                    self._scan = pos
                    break
        end = buf.find(b"\xff\xd9", self._scan)
        if end < 0:
            self._scan = max(self._scan, len(buf) - 1)  # search on from here next time
            return None
        image = bytes(buf[: end + 2])
        del buf[: end + 2]
        self._scan, self._pos = -1, 2
        return image

    def _resync(self, skip: int = 2) -> bytes | None:
        """Not a JPEG header after all: drop up to ``skip`` and look for the next SOI."""
        self.dropped_bytes += skip
        del self._buf[:skip]
        self._scan, self._pos = -1, 2
        return self._next()


class StderrTail:
    """The last few non-empty lines a command wrote to stderr (``\\r`` ends a line too: progress
    lines rewrite themselves), for ``last_error``."""

    def __init__(self, lines: int = STDERR_LINES, max_line: int = 300) -> None:
        self.lines: deque[str] = deque(maxlen=lines)
        self.max_line = max_line
        self._partial = b""

    def feed(self, data: bytes) -> None:
        parts = (self._partial + data).replace(b"\r", b"\n").split(b"\n")
        self._partial = parts.pop()[-4096:]
        for part in parts:
            self._add(part)

    def close(self) -> None:
        self._add(self._partial)
        self._partial = b""

    def _add(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if line:
            self.lines.append(line[: self.max_line])

    def text(self) -> str:
        return " | ".join(self.lines)


def describe_exit(returncode: int | None, stderr: str, frames: int, leftover: int = 0) -> str:
    """Why a command's stdout ended, in one line: its exit status, a frame left incomplete (a hint
    that the configured size or format is not what it writes), and the last words it wrote."""
    if returncode is None:
        how = "closed its output"
    elif returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"was killed by {name}"
    else:
        how = f"exited with code {returncode}"
    part = f" and {leftover} bytes of an incomplete frame" if leftover else ""
    tail = f": {stderr}" if stderr else ""
    return f"command {how} after {frames} frames{part}{tail}"


def split_command(uri: str) -> list[str]:
    """The command line as argv (shell quoting rules, no shell); ValueError if it is not one."""
    argv = shlex.split(uri)
    if not argv:
        raise ValueError("empty command")
    return argv


def command_problem(uri: str) -> str | None:
    """What keeps the command from starting here (unparsable, or its program is not found on PATH
    or not executable), or None; ``config check`` reports it, the daemon retries it."""
    try:
        program = split_command(uri)[0]
    except ValueError as exc:
        return f"not a command line ({exc})"
    if os.sep in program:
        if not os.path.isfile(program):
            return f"{program!r} not found"
        if not os.access(program, os.X_OK):
            return f"{program!r} is not executable"
        return None
    if shutil.which(program) is None:
        return f"{program!r} not found on PATH"
    return None


_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork
except (OSError, AttributeError):  # not Linux/glibc: no parent-death signal
    _prctl = None


#: The guard between the daemon and each command, run as a script by the daemon's own Python.
GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipeguard.py")


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Called in a child process (``parent``: the pid that started it): the kernel sends it ``sig``
    (SIGKILL: it dies) when the thread that forked it ends, even when the parent is SIGKILLed; it exits at
    once if the parent is already gone (the signal is only armed for a parent still alive). Run
    between fork and exec it takes no lock another thread could hold at fork (one prctl call
    through a pointer resolved at import, getppid), which keeps ``preexec_fn`` safe beside the
    daemon's other threads. Linux only (elsewhere just the parent check)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


@dataclass(frozen=True)
class PipeSpec:
    """What a pipe source needs from its config."""

    command: str
    pixel_format: str
    width: int | None
    height: int | None
    fps: float


class PipeCapture:
    """A running command whose stdout carries frames, read with the ``cv2.VideoCapture`` calls the
    live reader uses. ``grab`` waits at most ``poll_s`` for the next frame, so the reader checks
    its stop flag and its stall timeout between waits."""

    def __init__(self, spec: PipeSpec, *, poll_s: float = 0.1) -> None:
        self.spec = spec
        self.poll_s = poll_s
        if spec.pixel_format == "mjpeg":
            self._framer: RawFramer | JpegSplitter = JpegSplitter()
        else:
            self._framer = RawFramer(frame_bytes(spec.pixel_format, spec.width, spec.height))
        self.stderr = StderrTail()
        self.frames_out = 0
        self._frames: deque[bytes] = deque()
        self._current: bytes | None = None
        self._open = True  # stdout not yet at its end
        self._status: int | None = None  # exit status once the command has exited (not yet reaped)
        self._reaped_elsewhere = False
        self.ended: str | None = None  # why no frame will come any more, once that is so
        argv = split_command(spec.command)
        problem = command_problem(spec.command)  # found before the guard starts (it would exit 127)
        if problem:
            raise OSError(problem)
        parent = os.getpid()
        self.proc = subprocess.Popen(  # the guard (pid, exit status), the command its child
            [sys.executable, "-I", "-S", GUARD, str(parent), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(parent, signal.SIGHUP),
        )
        self.pgid = self.proc.pid  # its own session: group id == the guard's pid
        self._fds = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}
        for fd in self._fds:
            os.set_blocking(fd, False)
        try:  # fewer wakeups per frame (a 640x480 I420 frame is 450 KiB; the default pipe holds 64)
            import fcntl

            fcntl.fcntl(self.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        except (ImportError, AttributeError, OSError):
            pass
        self._chunk = 1 << 20

    # -- the cv2.VideoCapture calls the live reader makes -------------------------------------
    def grab(self) -> bool:
        """The next frame, waiting at most ``poll_s``; False if none came (see :attr:`ended`)."""
        deadline = time.monotonic() + self.poll_s
        while not self._frames:
            if not self._open:
                self._end()
                return False
            wait = deadline - time.monotonic()
            if wait <= 0:
                return False
            self._read(wait)
        self._current = self._frames.popleft()
        if self.spec.pixel_format == "mjpeg":  # its header's size, checked before decoding (imdecode would allocate it)
            size = jpeg_size(self._current)
            too_big = size_problem(*size) if size else None
            if too_big:
                self._current = None
                self.ended = f"{too_big} (the JPEG header of frame {self.frames_out + 1})"
                return False
        self.frames_out += 1
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        if self._current is None:
            return False, None
        try:
            frame = to_bgr(self._current, self.spec.pixel_format, self.spec.width, self.spec.height)
        except cv2.error:
            frame = None
        return frame is not None, frame

    def get(self, prop: int) -> float:
        """No stream timestamps (the position is NaN): frames are timed by arrival."""
        return math.nan

    def release(self) -> None:
        """Stop the command's whole process group: SIGTERM, SIGKILL after a grace, then reap."""
        self._has_exited()  # notices a leader reaped elsewhere, whose group id may be another's now
        if self.proc.returncode is None and not self._reaped_elsewhere:
            _signal_group(self.pgid, signal.SIGTERM)
            end = time.monotonic() + TERM_GRACE_S
            while not self._has_exited() and time.monotonic() < end:
                time.sleep(0.02)
            # Still unreaped, the leader keeps the group id from being reused: safe to signal.
            _signal_group(self.pgid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    # -- inside --------------------------------------------------------------------------------
    def _read(self, wait: float) -> None:
        fds = list(self._fds)
        if not fds:
            self._open = False
            return
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(max(0, int(wait * 1000))):
            try:
                data = os.read(fd, self._chunk)
            except BlockingIOError:
                continue
            if self._fds[fd] == "err":
                if data:
                    self.stderr.feed(data)
                else:
                    del self._fds[fd]
                    self.stderr.close()
            elif data:
                self._frames.extend(self._framer.feed(data))
            else:
                del self._fds[fd]
                self._open = False

    def _end(self) -> None:
        """Stdout is at its end: say why, with what the command last wrote to stderr."""
        if self.ended is not None:
            return
        end = time.monotonic() + 1.0
        while "err" in self._fds.values() and time.monotonic() < end:  # its last words
            self._read(end - time.monotonic())
        end = time.monotonic() + 1.0
        while not self._has_exited() and time.monotonic() < end:
            time.sleep(0.01)
        code = self._status if self._status is not None else self.proc.returncode
        self.ended = describe_exit(code, self.stderr.text(), self.frames_out, self._framer.pending)

    def _has_exited(self) -> bool:
        """Has the leader exited? Asked without reaping it (the group id stays reserved); its exit
        status goes to :attr:`_status` (negative: killed by that signal)."""
        if self._status is not None or self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere (not by this class): never signal its group
            self._reaped_elsewhere = True
            return True
        if info is None:
            return False
        self._status = -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status
        return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def open_pipe(cfg: "SourceConfig") -> Opened:
    try:
        pipe = PipeCapture(PipeSpec(cfg.uri, cfg.pixel_format, cfg.width, cfg.height, cfg.fps))
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot start command: {exc}") from None
    return Opened(pipe, cfg.width or 0, cfg.height or 0, cfg.fps, f"pipe {cfg.pixel_format}")


#: Only when the config says ``kind = "pipe"``: the URI is a command line.
KIND = Kind("pipe", None, open_pipe, lambda cfg: command_problem(cfg.uri))
