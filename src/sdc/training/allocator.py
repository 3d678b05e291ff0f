"""Keep freed memory in the process, so that a CPU step does not wait on the kernel.

PyTorch's CPU tensors come from glibc's `malloc`. glibc serves every block above its mmap
threshold (at most 32 MB) with a fresh `mmap` and gives it back to the kernel on `free`; the
heap's top is trimmed back too. A training step of the speech embedding allocates activations of
100 MB and more, so each step the kernel maps, faults in and zeroes them again, page by page:
two trainings of `best` side by side on a 2-core VM spent a quarter to two thirds of their CPU
time in the kernel, about 64,000 page faults a second each. Told to serve every block from
its heap, malloc reuses what the last step freed: no page faults after the first steps, and the
system time gone.

The price is memory: what a process has used stays its own until it exits, so it holds its peak
(more than that, as its heap fragments): in `make bench`, an epoch of the embedding recipe peaked
at 2.57 GB against 2.00 GB, in 44.6 s against 61.1 s. Set `SDC_MALLOC=default` to keep glibc's
own behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1
"""The largest `mallopt` takes (an int): only more than 2 GiB free at the heap's top goes back."""


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed blocks instead of returning them to the kernel.

    Returns whether it did: not with `SDC_MALLOC=default`, nor where the C library is not glibc
    (macOS, musl), whose allocators need no such help or take no such options.
    """
    if os.environ.get("SDC_MALLOC", "").strip().lower() == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.warning("glibc's mallopt refused; freed memory goes back to the kernel")
    return done
