"""Whether a window can be opened: ``cv2.imshow`` without a usable display aborts the whole process (Qt)."""
from __future__ import annotations

import os
import subprocess
import sys

from ..errors import VideoError

# OpenCV's Qt backend aborts (SIGABRT, no Python exception) when it cannot reach a display, so the only safe
# test is to open a window in a child process and look at how it ended.
_PROBE = "import cv2; cv2.namedWindow('star-track-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def require_display(timeout: float = 20.0) -> None:
    """Raise :class:`VideoError` (one line) unless this process can open an OpenCV window."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                  or os.environ.get("QT_QPA_PLATFORM")):
        raise VideoError("no display: DISPLAY is not set (run on a desktop, over ssh -X, or use "
                         "`star-track video` to write an annotated file instead)")
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VideoError(f"no display: opening a window did not finish in {timeout:.0f} s") from None
    if probe.returncode != 0:
        raise VideoError(f"no display: a window cannot be opened here (DISPLAY={os.environ.get('DISPLAY', '')!r}); "
                         "use `star-track video` to write an annotated file instead")
