"""Refuse 32-bit userlands before pip tries to build numpy, OpenCV and pyzmq from source.

Everything else is in pyproject.toml. A 32-bit Raspberry Pi OS (also on a 64-bit kernel, where
`uname -m` says aarch64) has no PyPI wheels for Python 3.11 of tflite-runtime, numpy,
opencv-python-headless or pyzmq (PI.md, "32-bit"); ai-edge-litert has none for any 32-bit Arm.
"""

import os
import platform
import struct
import sys

from setuptools import setup

if (
    struct.calcsize("P") == 4
    and platform.machine().lower().startswith(("arm", "aarch64"))
    and not os.environ.get("EDGEVID_ALLOW_32BIT")
):
    sys.exit(
        f"edgevid: this is a 32-bit Python on {platform.machine()}; PyPI has no 32-bit Arm wheels for its "
        "runtime dependencies (TFLite runtime, numpy, OpenCV, pyzmq). Install 64-bit Raspberry Pi OS, "
        "or see README 'Raspberry Pi' (32-bit) and set EDGEVID_ALLOW_32BIT=1 with your own wheels."
    )

setup()
