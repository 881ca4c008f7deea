"""What every transport offers: run one rendered script on a host, get one JSON document back."""

from __future__ import annotations

import json
from typing import Any, Protocol

from arpfix.errors import TransportError


class Transport(Protocol):
    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Run the script on the host and return the JSON document it printed on stdout.

        Raises TransportError (one clear line, secrets redacted) on connection failure, timeout,
        a non-zero exit or output that is not one JSON document.
        """
        ...

    def close(self) -> None: ...


def stdin_safe(script: str) -> str:
    """`script` for a shell that reads it from stdin (`sh -s`): run in a subshell with stdin from
    /dev/null, so no command in it can read (swallow) the text that follows. The shell parses the
    whole subshell before running any of it."""
    return f"(\n{script.rstrip(chr(10))}\n) </dev/null\n"


def parse_json_output(host: str, stdout: str, stderr: str, exit_code: int) -> dict[str, Any]:
    """Turn a script's output into its JSON document, or a TransportError naming what went wrong.

    Scripts print exactly one JSON object, on the last non-empty line of stdout.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    document: dict[str, Any] | None = None
    if lines:
        try:
            parsed = json.loads(lines[-1])
            if isinstance(parsed, dict):
                document = parsed
        except ValueError:
            document = None
    if exit_code != 0:
        reason = ""
        if document and document.get("error"):
            reason = str(document["error"])
        else:
            tail = (stderr.strip().splitlines() or [""])[-1]
            reason = tail or f"exit code {exit_code}"
        raise TransportError(f"{host}: remote script failed: {reason}", document=document)
    if document is None:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        raise TransportError(f"{host}: remote script returned no JSON document ({tail})")
    return document
