"""Keep the TFLite runtime's native start-up chatter off the terminal.

The C++ runtime writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to file
descriptor 2 when an interpreter is created; no Python logger or environment variable controls it
(LiteRT ignores ``TF_CPP_MIN_LOG_LEVEL`` for it), and it breaks progress bars and ``--json`` consumers
reading stderr. Written by hand because no library does this: while an interpreter is created, fd 2
points at a temporary file; afterwards every captured line that is not a known informational one is
written back to the real stderr (warnings and errors from the runtime, or another thread's output in
that short window, are never lost, only delayed).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

# Lines the runtime prints on every start that tell an operator nothing.
CHATTER = re.compile(
    rb"^INFO: (Created TensorFlow Lite .*delegate for CPU\.|Initialized TensorFlow Lite runtime\.)\s*$"
)

_lock = threading.Lock()


@contextlib.contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """Run the body with the process's fd 2 captured; re-emit all but :data:`CHATTER` lines."""
    with _lock:  # one redirection at a time: fd 2 is process-wide
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (a closed stderr): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True) if not CHATTER.match(line)]
                if kept:
                    os.write(2, b"".join(kept))
