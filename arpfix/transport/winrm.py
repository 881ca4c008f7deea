"""WinRM transport: run one PowerShell script on a Windows host, get one JSON document back.

pywinrm is imported lazily (inside this module's functions only) so that `arpfix --help` and the
Linux path never pay for it.

Security rules enforced here, before any packet is sent:
- HTTPS validates the server certificate by default (against `ca_bundle` when given, otherwise the
  system/certifi store). `cert_validation: false` is honoured only when the caller passes
  insecure=True (the CLI's explicit --insecure); otherwise it is refused.
- HTTP is allowed only with message encryption (ntlm, kerberos, credssp -> encryption 'always').
  That is what a stock Windows Server accepts: its listener is HTTP 5985, the service allows
  Kerberos and Negotiate (NTLM) and refuses unencrypted messages and Basic (AllowUnencrypted and
  Basic default to false: "WinRM Service Default Configuration Settings" in
  https://learn.microsoft.com/en-us/windows/win32/winrm/installation-and-configuration-for-windows-remote-management).
  Basic over HTTP sends the password in clear and is refused unless insecure=True.
- Certificate authentication needs HTTPS.

One script per action: the script is run with `powershell -NoProfile -NonInteractive
-EncodedCommand`. A script whose encoded command line would exceed the ~8 KB cmd.exe limit is
uploaded in chunks (`echo <base64>>>"%TEMP%\\arpfix-<random>.b64"`) in the same shell, then one
small PowerShell loader reads, deletes and runs it.
"""

from __future__ import annotations

import base64
import re
import secrets as _random
import time
from typing import Any
from xml.etree import ElementTree

from arpfix.errors import TransportError
from arpfix.secrets import SecretError, redact
from arpfix.settings import Host
from arpfix.transport.base import parse_json_output

# cmd.exe accepts 8191 characters per command line; keep a margin for "powershell -NoProfile ...".
COMMAND_LINE_LIMIT = 8000
CHUNK_SIZE = 7000  # base64 characters per `echo` upload command
# WS-Man OperationTimeout for one Receive long-poll; the whole script has its own deadline.
RECEIVE_POLL_SECONDS = 20
# WinRM holds a Receive until output arrives or OperationTimeout passes, then answers w:TimedOut.
# A peer that answers sooner than this with nothing (TimedOut at once, or an empty Running state)
# is not long-polling: wait before asking again, doubling from START up to MAX, so such a peer
# gets about one Receive a second instead of one per round trip (thousands a second).
QUICK_RECEIVE_SECONDS = 1.0
RECEIVE_BACKOFF_START = 0.05
RECEIVE_BACKOFF_MAX = 1.0
# What a WS-Management answer carries: SOAP, or SOAP sealed by message encryption (multipart/encrypted,
# MS-WSMV 2.2.9.1: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-wsmv/58421aa4-861a-4410-831a-c999f094cdb7).
WSMAN_CONTENT_TYPES = ("application/soap+xml", "multipart/encrypted")

POWERSHELL = "powershell -NoProfile -NonInteractive -EncodedCommand "

# Put around every script: no progress records, UTF-8 output. Scripts never call `exit`
# themselves: they set $global:ArpfixExitCode, and the last line turns it into the exit code
# (works the same whether the script runs directly or inside the chunk loader's script block).
PRELUDE = (
    "$ProgressPreference = 'SilentlyContinue'\n"
    "$global:ArpfixExitCode = 0\n"
    "try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }\n"
)
POSTLUDE = "\nexit $global:ArpfixExitCode\n"

_CLIXML_HEADER = "#< CLIXML"
_XML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def full_script(script: str) -> str:
    """The text PowerShell runs for `script`: the prelude, the script, the exit-code postlude."""
    return PRELUDE + script + POSTLUDE


def loader(name: str, fill: str = "") -> str:
    """A small PowerShell script that runs a long script from its base64 (UTF-8) text in
    %TEMP%\\`name`, put there by chunked `echo` uploads (cmd.exe lines are limited) or by `fill`.

    In ConstrainedLanguage (AppLocker/WDAC) the .NET calls are refused when they run
    (about_Language_Modes), so there certutil decodes the file (`certutil -decode InFile OutFile`, an
    inbox Windows tool) and Invoke-Expression runs the script, in that same language mode: the facts
    script needs nothing else."""
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"$p = Join-Path $env:TEMP '{name}'\n"
        f"{fill}"
        "$global:ArpfixExitCode = 1\n"
        "if ($ExecutionContext.SessionState.LanguageMode -eq 'FullLanguage') {\n"
        "$b = ([IO.File]::ReadAllText($p)) -replace '\\s', ''\n"
        "Remove-Item -LiteralPath $p -Force\n"
        "$s = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($b))\n"
        "& ([ScriptBlock]::Create($s))\n"
        "} else {\n"
        "$o = $p + '.ps1'\n"
        "& certutil.exe -f -decode $p $o | Out-Null\n"
        "$d = $LASTEXITCODE\n"
        "Remove-Item -LiteralPath $p -Force\n"
        "if ($d -ne 0) { '{\"error\":\"certutil could not decode the uploaded script\"}'; exit 1 }\n"
        "$s = Get-Content -LiteralPath $o -Raw -Encoding UTF8\n"
        "Remove-Item -LiteralPath $o -Force\n"
        "Invoke-Expression $s\n"
        "}\n"
        "exit $global:ArpfixExitCode\n"
    )


def stdin_loader() -> str:
    """The loader for base64 text that arrives on standard input (the Ansible collection over
    Ansible's winrm connection): `$input` is the piped input of an -EncodedCommand script, as
    Ansible's own bootstrap_wrapper.ps1 (ansible/executor/powershell/) reads its payload."""
    return loader(f"arpfix-{_random.token_hex(8)}.b64",
                  "$input | Out-String | Set-Content -LiteralPath $p -Encoding Ascii -NoNewline\n")


def encode_command(script: str) -> str:
    """PowerShell's -EncodedCommand form: base64 of the UTF-16LE script."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def clean_clixml(stderr: str) -> tuple[str, list[str]]:
    """Strip CLIXML from stderr. Returns (readable text, error records).

    Progress/verbose/information records are dropped; `<S S="Error">` lines are kept (and returned
    separately as error records). Text that is not CLIXML is returned unchanged.
    """
    text = stderr.strip()
    if not text.startswith(_CLIXML_HEADER):
        return stderr, []
    readable: list[str] = []
    errors: list[str] = []
    # There can be several CLIXML documents (one per write); parse each <Objs>...</Objs>.
    for block in re.findall(r"<Objs\b.*?</Objs>", text, flags=re.DOTALL):
        try:
            root = ElementTree.fromstring(block)
        except ElementTree.ParseError:
            continue
        for element in root.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            if tag != "S":
                continue
            stream = element.get("S", "")
            value = _XML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), element.text or "")
            if stream.lower() == "error":
                errors.append(value)
            if stream.lower() in ("error", "warning"):
                readable.append(value)
    joined = "".join(readable)
    lines = [line.rstrip() for line in joined.splitlines() if line.strip()]
    error_lines = [
        line.rstrip() for line in "".join(errors).splitlines() if line.strip()
    ]
    return "\n".join(lines), error_lines


class NotWsmanError(Exception):
    """An HTTP answer that is not WS-Management (a web page, a proxy, another service on the port)."""


def _pause(seconds: float) -> None:
    time.sleep(seconds)  # one name for the tests to replace


def _require_wsman(response: Any) -> None:
    """Raise NotWsmanError unless `response` (a requests.Response) can be a WS-Management answer."""
    content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type in WSMAN_CONTENT_TYPES:
        return
    if not response.content and not response.request.body:
        return  # the empty POST that sets up message encryption is answered with an empty 200
    shown = content_type or "no content type"
    raise NotWsmanError(f"HTTP {response.status_code} answer with {shown}, {len(response.content)} bytes")


def _check_answers(protocol: Any) -> None:
    """Make the pywinrm session check every answer's content type (see _require_wsman).

    pywinrm parses any HTTP 200 body as SOAP: a web page ends in StopIteration or AttributeError, a
    well-formed one as a Receive that never finishes. Its transport sends every request (including
    the message-encryption set-up) through _send_message_request, so the check goes there.
    """
    send = getattr(protocol.transport, "_send_message_request", None)
    if send is None:  # another pywinrm layout: pywinrm's own parsing errors remain
        return

    def checked(*args: Any, **kwargs: Any) -> Any:
        response = send(*args, **kwargs)
        _require_wsman(response)
        return response

    protocol.transport._send_message_request = checked


class WinrmTransport:
    """Transport over WinRM (WS-Management) with pywinrm."""

    def __init__(self, host: Host, *, insecure: bool = False) -> None:
        self.host = host
        self.insecure = insecure
        self.settings = host.winrm
        self.endpoint = self._endpoint()
        self._kwargs = self._protocol_kwargs()  # validates before anything is sent
        self._protocol: Any = None

    # ------------------------------------------------------------------ configuration
    def _fail(self, message: str) -> TransportError:
        return TransportError(redact(f"{self.host.name}: {message}"))

    def _endpoint(self) -> str:
        scheme = self.settings.scheme.lower()
        if scheme not in ("http", "https"):
            raise self._fail(f"winrm scheme must be http or https, not {scheme!r}")
        target = self.host.connect or str(self.host.address)
        if ":" in target and not target.startswith("["):
            target = f"[{target}]"  # IPv6 literal
        return f"{scheme}://{target}:{int(self.settings.port)}/wsman"

    def _protocol_kwargs(self) -> dict[str, Any]:
        s = self.settings
        scheme = s.scheme.lower()
        auth = s.auth.lower()
        if auth not in ("ntlm", "kerberos", "credssp", "certificate", "basic"):
            raise self._fail(f"unsupported winrm auth {auth!r}")
        kwargs: dict[str, Any] = {"transport": auth}

        if scheme == "https":
            if s.cert_validation:
                kwargs["server_cert_validation"] = "validate"
                # None = no extra trust path: the default (certifi/system) store, never env vars.
                kwargs["ca_trust_path"] = s.ca_bundle if s.ca_bundle else None
            elif self.insecure:
                kwargs["server_cert_validation"] = "ignore"
            else:
                raise self._fail(
                    "cert_validation is false in the inventory; refusing to skip certificate "
                    "validation without --insecure (better: give ca_bundle)"
                )
            kwargs["message_encryption"] = "auto"  # TLS already protects the messages
        else:
            kwargs["ca_trust_path"] = None  # never pick up REQUESTS_CA_BUNDLE implicitly
            if auth == "basic":
                if not self.insecure:
                    raise self._fail(
                        "Basic authentication over HTTP sends the password in clear; use https, "
                        "ntlm/kerberos/credssp with message encryption, or pass --insecure"
                    )
                kwargs["message_encryption"] = "never"
            elif auth == "certificate":
                raise self._fail("certificate authentication needs scheme https")
            else:
                kwargs["message_encryption"] = "always"

        if auth == "certificate":
            if not (s.cert_pem and s.cert_key_pem):
                raise self._fail("certificate auth needs cert_pem and cert_key_pem")
            kwargs["cert_pem"] = s.cert_pem
            kwargs["cert_key_pem"] = s.cert_key_pem
            kwargs["username"] = s.user or ""
            kwargs["password"] = ""
        else:
            kwargs["username"] = s.user
            if auth != "kerberos" and not s.user:
                raise self._fail(f"winrm auth {auth} needs a user")
            kwargs["_password_ref"] = s.password
            if auth not in ("kerberos",) and s.password is None:
                raise self._fail(f"winrm auth {auth} needs a password reference")

        poll = max(1, min(RECEIVE_POLL_SECONDS, int(s.operation_timeout)))
        kwargs["operation_timeout_sec"] = poll
        kwargs["read_timeout_sec"] = poll + 10  # must exceed the operation timeout
        return kwargs

    def _connect(self) -> Any:
        if self._protocol is not None:
            return self._protocol
        from winrm.protocol import Protocol  # lazy: only the Windows path imports pywinrm

        kwargs = dict(self._kwargs)
        ref = kwargs.pop("_password_ref", None)
        if ref is not None:
            try:
                kwargs["password"] = ref.resolve(f"{self.host.name} winrm password")
            except SecretError as exc:
                raise self._fail(str(exc)) from None
        elif "password" not in kwargs:
            kwargs["password"] = None
        try:
            protocol = Protocol(self.endpoint, proxy=None, **kwargs)
        except Exception as exc:  # noqa: BLE001 - pywinrm validates arguments here
            raise self._fail(f"cannot set up WinRM: {exc}") from None
        # requests accepts (connect, read): a short connect timeout, a long read timeout.
        protocol.transport.read_timeout_sec = (  # type: ignore[assignment]
            float(self.settings.connect_timeout),
            float(kwargs["read_timeout_sec"]),
        )
        _check_answers(protocol)
        self._protocol = protocol
        return protocol

    # ------------------------------------------------------------------ errors
    def _map_error(self, exc: BaseException, during: str) -> TransportError:
        import requests
        from winrm import exceptions as wexc

        where = f"{self.endpoint}"
        if isinstance(exc, NotWsmanError):
            msg = (
                f"{where} is not a WS-Management endpoint ({exc}) during {during}; "
                "check the address, port and scheme of the WinRM listener"
            )
        elif isinstance(exc, wexc.InvalidCredentialsError):
            msg = f"authentication failed for user {self.settings.user!r} at {where}"
        elif isinstance(exc, wexc.WSManFaultError):
            msg = f"WinRM fault during {during}: {str(exc.reason).strip()}"
            if exc.wsman_fault_code:
                msg += f" (code {exc.wsman_fault_code})"
        elif isinstance(exc, wexc.WinRMTransportError):
            msg = f"WinRM HTTP error {exc.code} during {during}"
        elif isinstance(exc, requests.exceptions.SSLError):
            reason = _ssl_reason(exc)
            msg = (
                f"certificate not trusted ({reason}) at {where}; give ca_bundle or --insecure "
                "(with cert_validation: false)"
            )
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            msg = f"connection to {where} timed out after {self.settings.connect_timeout:g}s"
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            msg = f"no answer from {where} during {during} (read timeout)"
            if during == "the script":
                msg += f"; {self._unknown_outcome()}"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "refused" in text.lower():
                msg = f"connection refused by {where} (is WinRM listening on that port?)"
            elif during == "connect":
                msg = f"cannot connect to {where}: {_short(text)}"
            else:
                msg = f"connection lost during {during} ({_short(text)})"
                if during == "the script":
                    msg += f"; {self._unknown_outcome()}"
        elif isinstance(exc, wexc.WinRMError):
            msg = f"WinRM error during {during}: {exc}"
            if self.settings.auth.lower() == "kerberos" and "not installed" in str(exc):
                msg += " (install pywinrm[kerberos], which needs the system's Kerberos library, or use auth ntlm)"
        else:
            msg = f"unexpected {type(exc).__name__} during {during}: {exc}"
        return self._fail(msg)

    def _unknown_outcome(self) -> str:
        # The command belongs to the WinRM shell, not to our connection: it runs on until it ends or
        # the idle shell is deleted (Winrs IdleTimeout, "Winrs Default Configuration Settings" in
        # https://learn.microsoft.com/en-us/windows/win32/winrm/installation-and-configuration-for-windows-remote-management),
        # so once the connection is gone nobody here knows which happened.
        return (
            "the remote script may still be running or may have been stopped; "
            f"run 'arpfix audit --limit {self.host.name}' to see the host's state before running again"
        )

    # ------------------------------------------------------------------ running
    def _run_command(self, protocol: Any, shell_id: str, command: str, deadline: float,
                     what: str) -> tuple[str, str, int]:
        from winrm.exceptions import WinRMOperationTimeoutError

        command_id = protocol.run_command(shell_id, command)
        out: list[bytes] = []
        err: list[bytes] = []
        backoff = RECEIVE_BACKOFF_START
        while True:
            asked = time.monotonic()
            try:
                stdout, stderr, code, done = protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:
                # the server's Receive long-poll expired with no output: normal, poll again
                if time.monotonic() > deadline:
                    try:
                        protocol.cleanup_command(shell_id, command_id)
                    except Exception:  # noqa: BLE001, S110
                        pass
                    raise TransportError(
                        f"{self.host.name}: {what} did not finish within the time limit"
                    ) from None
                backoff = _back_off(asked, backoff, deadline)
                continue
            out.append(stdout)
            err.append(stderr)
            if done:
                break
            if time.monotonic() > deadline:
                raise TransportError(f"{self.host.name}: {what} did not finish within the time limit")
            if stdout or stderr:
                backoff = RECEIVE_BACKOFF_START  # output flows: fetch the rest at once
            else:
                backoff = _back_off(asked, backoff, deadline)
        try:
            protocol.cleanup_command(shell_id, command_id)
        except Exception:  # noqa: BLE001, S110
            pass  # the command finished; a failed cleanup does not change its result
        return (
            b"".join(out).decode("utf-8", errors="replace"),
            b"".join(err).decode("utf-8", errors="replace"),
            code,
        )

    def commands_for(self, script: str) -> list[str]:
        """The cmd.exe command lines that run `script` (one, or chunk uploads + a loader)."""
        full = full_script(script)
        encoded = encode_command(full)
        if len(POWERSHELL) + len(encoded) <= COMMAND_LINE_LIMIT:
            return [POWERSHELL + encoded]
        name = f"arpfix-{_random.token_hex(8)}.b64"
        payload = base64.b64encode(full.encode("utf-8")).decode("ascii")
        commands = [
            f'echo {payload[i:i + CHUNK_SIZE]}>>"%TEMP%\\{name}"'
            for i in range(0, len(payload), CHUNK_SIZE)
        ]
        commands.append(POWERSHELL + encode_command(loader(name)))
        return commands

    def run_raw(self, script: str, *, timeout: float | None = None) -> tuple[str, str, int]:
        """Run the script in one shell; return (stdout, raw stderr, exit code). No parsing."""
        limit = float(timeout if timeout is not None else self.settings.operation_timeout)
        deadline = time.monotonic() + limit
        protocol = self._connect()
        commands = self.commands_for(script)
        stage = "connect"
        try:
            shell_id = protocol.open_shell(codepage=65001, noprofile=True)
            stage = "the script"
            try:
                stdout = stderr = ""
                code = 0
                for index, command in enumerate(commands):
                    what = "the script" if index == len(commands) - 1 else "the script upload"
                    stage = what
                    stdout, stderr, code = self._run_command(
                        protocol, shell_id, command, deadline, what
                    )
                    if index < len(commands) - 1 and code != 0:
                        raise TransportError(
                            f"{self.host.name}: uploading the script to %TEMP% failed "
                            f"(exit code {code})"
                        )
            finally:
                try:
                    protocol.close_shell(shell_id, close_session=False)
                except Exception:  # noqa: BLE001, S110
                    pass
        except TransportError as exc:
            raise TransportError(redact(str(exc))) from None
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, stage) from None
        return stdout, stderr, code

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Run the script and return its JSON document (see Transport.run_script)."""
        stdout, stderr_raw, code = self.run_raw(script, timeout=timeout)
        return parse_output(self.host.name, stdout, stderr_raw, code)

    def close(self) -> None:
        if self._protocol is not None:
            try:
                self._protocol.transport.close_session()
            except Exception:  # noqa: BLE001, S110
                pass
            self._protocol = None


def parse_output(host_name: str, stdout: str, stderr_raw: str, code: int) -> dict[str, Any]:
    """A PowerShell script's output as its JSON document, or one TransportError line (redacted)."""
    stderr, error_records = clean_clixml(stderr_raw)
    if error_records:
        # the first line of an error record is its message; the rest is CategoryInfo etc.
        stderr = error_records[0]
        if code == 0:
            # a PowerShell error record is a failure even when the process exited 0
            raise TransportError(redact(f"{host_name}: remote script reported an error: {stderr}"))
    try:
        return parse_json_output(host_name, stdout, stderr, code)
    except TransportError as exc:
        raise TransportError(redact(str(exc))) from None


def _back_off(asked: float, backoff: float, deadline: float) -> float:
    """After a Receive that brought nothing: pause if it came back quickly; return the next pause."""
    now = time.monotonic()
    if now - asked >= QUICK_RECEIVE_SECONDS:
        return RECEIVE_BACKOFF_START  # the server long-polled: ask again at once
    _pause(max(0.0, min(backoff, deadline - now)))
    return min(backoff * 2, RECEIVE_BACKOFF_MAX)


def _short(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    match = re.search(r"\[Errno [^\]]*\] [^'\")]*|Remote end closed connection without response|"
                      r"Connection reset by peer|Connection aborted", text)
    if match:
        return match.group(0).strip()
    return text[:160]


def _ssl_reason(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"certificate verify failed: ([^(\")']+)", text)
    if match:
        return match.group(1).strip()
    if "hostname" in text.lower():
        return "hostname mismatch"
    return _short(text)
