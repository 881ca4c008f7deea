"""The one set of exit codes every arpfix command uses (documented in the README)."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # ok, compliant, nothing to do
    FAILED = 1  # operational failure on at least one host (unreachable, refused, failed)
    USAGE = 2  # usage or inventory error; no host was contacted
    PENDING = 3  # drift found or changes pending (plan, audit)
    VERIFY_FAILED = 4  # verification failed (verify)
    INTERRUPTED = 130  # interrupted by the user (Ctrl-C)
