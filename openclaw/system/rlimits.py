"""
Raising the open-file limit at start-up.

Each chat connection, gateway client and store handle is a file descriptor;
the common default soft limit of 1024 is reached long before the hardware
is, and the failure (EMFILE on accept) is silent to chat users.
"""

import resource

from openclaw.eliotutil import log

# What to ask for when the hard limit is unlimited: Linux's default
# fs.nr_open, beyond which setrlimit fails anyway.
NOFILE_CAP = 1_048_576


def nofile_candidates(soft: int, hard: int, cap: int = NOFILE_CAP) -> list[int]:
    """
    Soft limits worth trying, best first: the hard limit (or ``cap`` when
    it is unlimited), then halves of it, all above ``soft``.

    Halving finds what the kernel allows when it is below the hard limit
    (macOS's kern.maxfilesperproc, Linux's fs.nr_open) without reading
    platform-specific sysctls.
    """
    infinite = resource.RLIM_INFINITY
    if soft == infinite:
        return []
    target = cap if hard == infinite else hard
    candidates = []
    while target > soft:
        candidates.append(target)
        target //= 2
    return candidates


def raise_nofile() -> tuple[int, int]:
    """
    Raise the soft RLIMIT_NOFILE as far as the hard limit and kernel allow.

    :return: ``(soft, hard)`` afterwards; unchanged when nothing could be
        raised (logged at ``warn``, never raised: a low limit is survivable).
    """
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    candidates = nofile_candidates(before, hard)
    for candidate in candidates:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (candidate, hard))
        except (ValueError, OSError):
            continue
        log("openclaw:system:rlimit-nofile", "info", before=before, soft=candidate, hard=hard)
        return candidate, hard
    if candidates:
        log("openclaw:system:rlimit-nofile-failed", "warn", soft=before, hard=hard)
    return before, hard
