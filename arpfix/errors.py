"""Errors a user can cause. The CLI turns each into one clear line and its exit code."""

from __future__ import annotations

from arpfix.exitcodes import Exit


class ArpfixError(Exception):
    """An error with a message meant for the user and a documented exit code."""

    exit_code: Exit = Exit.FAILED

    def __init__(self, message: str, exit_code: Exit | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ArpfixError):
    exit_code = Exit.USAGE


class TransportError(ArpfixError):
    """A host could not be reached, refused us, or a remote script failed. Per-host, not fatal.

    `document`: the JSON the remote script printed before it failed (what it had already done),
    or None when it printed none (the connection was lost, the script was killed).
    """

    exit_code = Exit.FAILED

    def __init__(self, message: str, exit_code: Exit | None = None, document: dict | None = None) -> None:
        super().__init__(message, exit_code)
        self.document = document


class HostKeyError(TransportError):
    """The host presented an unknown or changed host key."""
