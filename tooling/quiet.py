"""Keep TensorFlow's start-up notices out of what a run prints, and nothing else.

Every process that imports TensorFlow 2.21 writes, before its logging is set up, lines such
as ``oneDNN custom operations are on ...`` and ``This TensorFlow binary is optimized to
use available CPU instructions ...`` to its standard error; ``TF_CPP_MIN_LOG_LEVEL`` no
longer silences them. ``make reproduce`` starts a kernel per notebook, so a newcomer would
read them seven times as trouble. They are not: :data:`START_UP_NOISE` lists exactly those
lines, and :func:`copy_without_noise` passes every other line through unchanged, so a
warning that means something still shows.

- :func:`quiet_stderr` filters this process's own standard error (at the file-descriptor
  level, so it also catches what TensorFlow's C++ code writes);
- :func:`tooling.series.LocalKernelManager` filters each notebook kernel's.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
from typing import BinaryIO

#: The start-up lines of TensorFlow (absl, oneDNN, the CPU feature guard), nothing more.
START_UP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|^I\d{4} [\d:.]+ +\d+ (port|cpu_feature_guard)\.cc:\d+\]"
    r"|^To enable the following instructions: .* in other operations, rebuild TensorFlow"
)


def is_start_up_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up notices (:data:`START_UP_NOISE`)."""
    return START_UP_NOISE.search(line) is not None


def copy_without_noise(source: BinaryIO, sink_fd: int) -> None:
    """Copy ``source`` line by line to the file descriptor ``sink_fd`` until it ends,
    leaving out TensorFlow's start-up notices."""
    for raw in iter(source.readline, b""):
        if not is_start_up_noise(raw.decode("utf-8", "replace")):
            os.write(sink_fd, raw)


def forward_in_background(source: BinaryIO, sink_fd: int) -> threading.Thread:
    """:func:`copy_without_noise` in a daemon thread (started), so the writer never waits."""
    thread = threading.Thread(target=copy_without_noise, args=(source, sink_fd), daemon=True)
    thread.start()
    return thread


def quiet_stderr() -> None:
    """Filter this process's standard error from now on: file descriptor 2 becomes a pipe
    read by a background thread that writes every line but the start-up notices to the
    original standard error. At exit the original comes back and the thread drains the
    pipe first, so nothing written last (a traceback) is lost. Call it before TensorFlow
    is first imported."""
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = forward_in_background(os.fdopen(read_end, "rb"), original)

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join(timeout=10)

    atexit.register(restore)
