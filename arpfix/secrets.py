"""Credentials by reference only: an environment variable, a file, or an interactive prompt.

A SecretRef never prints its value: repr/str show only where the secret comes from. Resolved values
are registered with the redactor so that any later output containing them is masked.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from arpfix.errors import ArpfixError

_known_secrets: set[str] = set()
_lock = threading.Lock()
_prompt_cache: dict[str, str] = {}


def register_secret(value: str) -> None:
    """Remember a secret value so that redact() masks it wherever it shows up later."""
    if value and len(value) >= 3:
        with _lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """Mask every known secret in text (used on every error message and report we print)."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "********")
    return text


class SecretError(ArpfixError):
    pass


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from: kind is env | file | prompt | plaintext (only when allowed)."""

    kind: str
    source: str
    # plaintext values (explicitly allowed) live here, hidden from repr and comparisons
    _value: str = field(default="", repr=False, compare=False)

    def describe(self) -> str:
        if self.kind == "env":
            return f"environment variable {self.source}"
        if self.kind == "file":
            return f"file {self.source}"
        if self.kind == "prompt":
            return "interactive prompt"
        return "inventory (plaintext)"

    def __str__(self) -> str:
        return f"<secret from {self.describe()}>"

    def resolve(self, what: str = "password") -> str:
        if self.kind == "plaintext":
            value = self._value
        elif self.kind == "env":
            value = os.environ.get(self.source, "")
            if not value:
                raise SecretError(f"{what}: environment variable {self.source} is not set or empty")
        elif self.kind == "file":
            path = Path(self.source).expanduser()
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"{what}: cannot read secret file {path}: {exc.strerror}") from None
        elif self.kind == "prompt":
            with _lock:
                cached = _prompt_cache.get(self.source)
            if cached is None:
                import click

                cached = click.prompt(f"{what} ({self.source})", hide_input=True, err=True)
                with _lock:
                    _prompt_cache[self.source] = cached
            value = cached
        else:  # pragma: no cover - validated at load
            raise SecretError(f"{what}: unknown secret kind {self.kind}")
        register_secret(value)
        return value
