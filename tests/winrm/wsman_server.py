"""A small WS-Management server for tests: the real pywinrm client talks to it over real HTTP.

It listens on 127.0.0.1 (ephemeral port) only. It does not run PowerShell: it decodes the
`-EncodedCommand` script (reassembling chunked `echo ...>>"%TEMP%\\arpfix-*.b64"` uploads), records
it, and answers with whatever the test's handler returns: handler(script) -> (stdout, stderr, code).

Authentication: Basic, or real NTLM (pyspnego acceptor, users from NTLM_USER_FILE) with WinRM
message encryption (multipart/encrypted, application/HTTP-SPNEGO-session-encrypted).

Faults a test can inject (attributes, changeable at any time):
- receive_timeouts: the next N Receives answer WS-Man fault 2150858793 (pywinrm retries);
- split_output: stdout is delivered over this many Receives;
- die_on_receive: the server closes the socket instead of answering the next Receive;
- receive_delay: seconds each Receive waits before it answers (a long poll);
- html_for: actions (e.g. {"Receive"}) answered HTTP 200 with a web page instead of WS-Man;
- wrong passwords are answered 401 (Basic and NTLM).
Standard input: a Command sent with WINRS_CONSOLEMODE_STDIN FALSE (pywinrm's, and so Ansible's winrm
connection's, way of saying stdin follows) runs when its first Receive arrives, after the Sends; a
loader that fills its file from `$input` is recorded as the decoded text it was sent.
receive_times records when each Receive arrived (time.monotonic()), to measure the poll rate.

PlainWebServer is an ordinary web server (no authentication, a page for every POST): what a client
reaches when the address or port is not a WinRM listener but something else answering HTTP 200.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree
from xml.sax.saxutils import escape

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_COMMAND = SHELL_URI + "/Command"
ACTION_RECEIVE = SHELL_URI + "/Receive"
ACTION_SIGNAL = SHELL_URI + "/Signal"
ACTION_SEND = SHELL_URI + "/Send"
ENC_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
FAULT_TIMED_OUT = 2150858793
FAULT_INVALID_SELECTORS = 2150858843
WEB_PAGE = b"<html><head><title>IIS Windows Server</title></head><body>It works</body></html>"

Handler = Callable[[str], tuple[str, str, int]]


def decode_encoded_command(command: str) -> str | None:
    match = re.search(r"-encodedcommand\s+([A-Za-z0-9+/=]+)", command, flags=re.IGNORECASE)
    if not match:
        return None
    return base64.b64decode(match.group(1)).decode("utf-16-le")


@dataclass
class _Command:
    stdout_parts: list[bytes]
    stderr: bytes
    code: int


@dataclass
class _Waiting:
    """A command that reads stdin: run at its first Receive, with what the Sends brought."""

    command: str
    stdin: list[bytes] = field(default_factory=list)


@dataclass
class _Shell:
    files: dict[str, list[str]] = field(default_factory=dict)  # %TEMP% uploads by name
    commands: dict[str, _Command | _Waiting] = field(default_factory=dict)


class WsmanServer:
    def __init__(self, handler: Handler, *, auth: str = "basic",
                 users: dict[str, str] | None = None) -> None:
        self.handler = handler
        self.auth = auth
        self.users = users or {"arpfix": "s3cret-Pass"}
        self.scripts: list[str] = []  # every script received, as captured from the wire
        self.commands: list[str] = []  # every raw command line
        self.actions: list[str] = []
        self.receive_timeouts = 0
        self.split_output = 1
        self.die_on_receive = False
        self.receive_delay = 0.0
        self.receive_times: list[float] = []
        self.html_for: set[str] = set()
        self.encrypted_requests = 0
        self.shells: dict[str, _Shell] = {}
        self.lock = threading.Lock()
        server = self

        class RequestHandler(_WsmanHandler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> WsmanServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --------------------------------------------------------------- command semantics
    def run_command(self, shell: _Shell, command: str, stdin: bytes = b"") -> _Command:
        self.commands.append(command)
        upload = re.fullmatch(r'echo ([A-Za-z0-9+/=]+)>>"%TEMP%\\(arpfix-[0-9a-f]+\.b64)"', command)
        if upload:
            shell.files.setdefault(upload.group(2), []).append(upload.group(1))
            return _Command([b""], b"", 0)
        script = decode_encoded_command(command)
        if script is None:
            return _Command([b""], b"'unknown' is not recognized as a command\r\n", 1)
        loader = re.search(r"Join-Path \$env:TEMP '(arpfix-[0-9a-f]+\.b64)'", script)
        if loader and "$input | Out-String" in script:  # the loader fills its file from stdin
            script = base64.b64decode(b"".join(stdin.split())).decode("utf-8")
        elif loader:
            chunks = shell.files.pop(loader.group(1), None)
            if chunks is None:
                return _Command([b""], b"Cannot find path\r\n", 1)
            script = base64.b64decode("".join(chunks)).decode("utf-8")
        self.scripts.append(script)
        stdout, stderr, code = self.handler(script)
        data = stdout.encode("utf-8")
        n = max(1, self.split_output)
        size = max(1, -(-len(data) // n)) if data else 1
        parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        return _Command(parts, stderr.encode("utf-8"), code)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">'
        f"<s:Header><a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault(relates_to: str, code: int, subcode: str, text: str) -> bytes:
    body = (
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode>"
        f"<s:Value>w:{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(text)}</s:Text></s:Reason>'
        '<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
        f'Code="{code}" Machine="127.0.0.1"><f:Message>{escape(text)}</f:Message>'
        "</f:WSManFault></s:Detail></s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


class _WsmanHandler(BaseHTTPRequestHandler):
    owner: WsmanServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    ntlm = None  # per-connection NTLM context (the handler instance lives as long as the socket)
    authenticated = False

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # ----------------------------------------------------------------- HTTP plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _unauthorized(self, challenge: str) -> None:
        self._send(401, b"", {"WWW-Authenticate": challenge})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""  # always read before answering
        server = self.owner
        if server.auth == "basic":
            if not self._basic_ok():
                self._unauthorized('Basic realm="WSMAN"')
                return
        else:
            header = self.headers.get("Authorization", "")
            if header.startswith("Negotiate "):
                self._ntlm_step(base64.b64decode(header.split(" ", 1)[1]), body)
                return
            if not self.authenticated:
                self._unauthorized("Negotiate")
                return
        self._answer(body)

    def _basic_ok(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode("latin-1").partition(":")
        return self.owner.users.get(user) == password

    def _ntlm_step(self, token: bytes, body: bytes) -> None:
        import spnego
        from spnego.exceptions import SpnegoError

        try:
            if self.ntlm is None or self.authenticated:
                self.ntlm = spnego.server(protocol="ntlm")
                self.authenticated = False
            out = self.ntlm.step(token)
        except SpnegoError:
            self.ntlm = None
            self._unauthorized("Negotiate")
            return
        if not self.ntlm.complete:
            self._unauthorized("Negotiate " + base64.b64encode(out or b"").decode())
            return
        self.authenticated = True
        self._answer(body)

    # ----------------------------------------------------------------- encryption
    def _decrypt(self, body: bytes) -> bytes:
        parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
        payload = parts[1]
        payload = payload.removesuffix(BOUNDARY + b"--\r\n")
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        sig_len = struct.unpack("<i", payload[:4])[0]
        signature = payload[4:4 + sig_len]
        sealed = payload[4 + sig_len:]
        return self.ntlm.unwrap(signature + sealed).data

    def _encrypt(self, message: bytes) -> bytes:
        wrapped = self.ntlm.wrap(message, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + ENC_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode() + b"\r\n"
            + BOUNDARY + b"\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(signature)) + signature + sealed
            + BOUNDARY + b"--\r\n"
        )

    def _answer(self, body: bytes) -> None:
        encrypted = "multipart/encrypted" in self.headers.get("Content-Type", "")
        if not body:
            self._send(200)  # pywinrm's empty POST that sets up message encryption
            return
        if encrypted:
            self.owner.encrypted_requests += 1
            body = self._decrypt(body)
        action = ElementTree.fromstring(body).findtext("s:Header/a:Action", "", NS).rsplit("/", 1)[-1]
        if action == "Receive":
            self.owner.receive_times.append(time.monotonic())
            if self.owner.receive_delay:
                time.sleep(self.owner.receive_delay)
        if action in self.owner.html_for:
            self.owner.actions.append(action)
            self._send(200, WEB_PAGE, {"Content-Type": "text/html"})
            return
        result = self._dispatch(body)
        if result is None:
            self.close_connection = True  # fault injection: vanish without an answer
            return
        status, reply = result
        if encrypted:
            self._send(status, self._encrypt(reply), {
                "Content-Type": f'multipart/encrypted;protocol="{ENC_PROTOCOL}";'
                                'boundary="Encrypted Boundary"'})
        else:
            self._send(status, reply, {"Content-Type": "application/soap+xml;charset=UTF-8"})

    # ----------------------------------------------------------------- WS-Man
    def _dispatch(self, body: bytes) -> tuple[int, bytes] | None:
        server = self.owner
        root = ElementTree.fromstring(body)
        action = root.findtext("s:Header/a:Action", "", NS)
        message_id = root.findtext("s:Header/a:MessageID", "", NS)
        shell_id = ""
        for selector in root.iterfind("s:Header/w:SelectorSet/w:Selector", NS):
            if selector.get("Name") == "ShellId":
                shell_id = selector.text or ""
        server.actions.append(action.rsplit("/", 1)[-1])
        with server.lock:
            if action == ACTION_CREATE:
                shell_id = str(uuid.uuid4()).upper()
                server.shells[shell_id] = _Shell()
                body_xml = (
                    "<x:ResourceCreated><a:Address>http://127.0.0.1/wsman</a:Address>"
                    "<a:ReferenceParameters><w:ResourceURI>"
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
                    f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector>'
                    "</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
                )
                return 200, _envelope(ACTION_CREATE + "Response", message_id, body_xml)
            shell = server.shells.get(shell_id)
            if shell is None:
                return 500, _fault(message_id, FAULT_INVALID_SELECTORS, "InvalidSelectors",
                                   "The request for the Windows Remote Shell with ShellId "
                                   f"{shell_id} failed because the shell was not found.")
            if action == ACTION_DELETE:
                del server.shells[shell_id]
                return 200, _envelope(ACTION_DELETE + "Response", message_id, "")
            if action == ACTION_COMMAND:
                line = root.find("s:Body/rsp:CommandLine", NS)
                command = (line.findtext("rsp:Command", "", NS) or "") if line is not None else ""
                arguments = line.findtext("rsp:Arguments", "", NS) if line is not None else ""
                if arguments:
                    command = f"{command} {arguments}"
                command_id = str(uuid.uuid4()).upper()
                stdin_follows = any(o.get("Name") == "WINRS_CONSOLEMODE_STDIN" and (o.text or "").upper() == "FALSE"
                                    for o in root.iterfind("s:Header/w:OptionSet/w:Option", NS))
                shell.commands[command_id] = (_Waiting(command.strip()) if stdin_follows
                                              else server.run_command(shell, command.strip()))
                return 200, _envelope(
                    ACTION_COMMAND + "Response", message_id,
                    f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
                    "</rsp:CommandResponse>")
            if action == ACTION_RECEIVE:
                if server.die_on_receive:
                    server.die_on_receive = False
                    return None
                if server.receive_timeouts > 0:
                    server.receive_timeouts -= 1
                    return 500, _fault(message_id, FAULT_TIMED_OUT, "TimedOut",
                                       "The WS-Management service cannot complete the operation "
                                       "within the time specified in OperationTimeout.")
                stream = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
                command_id = stream.get("CommandId", "") if stream is not None else ""
                cmd = shell.commands[command_id]
                if isinstance(cmd, _Waiting):
                    cmd = shell.commands[command_id] = server.run_command(shell, cmd.command, b"".join(cmd.stdin))
                part = cmd.stdout_parts.pop(0)
                streams = ""
                if part:
                    streams += (f'<rsp:Stream Name="stdout" CommandId="{command_id}">'
                                f"{base64.b64encode(part).decode()}</rsp:Stream>")
                done = not cmd.stdout_parts
                if done:
                    if cmd.stderr:
                        streams += (f'<rsp:Stream Name="stderr" CommandId="{command_id}">'
                                    f"{base64.b64encode(cmd.stderr).decode()}</rsp:Stream>")
                    streams += (f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true">'
                                f'</rsp:Stream><rsp:Stream Name="stderr" '
                                f'CommandId="{command_id}" End="true"></rsp:Stream>')
                    state = (f'<rsp:CommandState CommandId="{command_id}" '
                             f'State="{SHELL_URI}/CommandState/Done">'
                             f"<rsp:ExitCode>{cmd.code}</rsp:ExitCode></rsp:CommandState>")
                else:
                    state = (f'<rsp:CommandState CommandId="{command_id}" '
                             f'State="{SHELL_URI}/CommandState/Running"></rsp:CommandState>')
                return 200, _envelope(ACTION_RECEIVE + "Response", message_id,
                                      f"<rsp:ReceiveResponse>{streams}{state}"
                                      "</rsp:ReceiveResponse>")
            if action == ACTION_SEND:
                stream = root.find("s:Body/rsp:Send/rsp:Stream", NS)
                waiting = shell.commands.get(stream.get("CommandId", "") if stream is not None else "")
                if isinstance(waiting, _Waiting) and stream is not None:
                    waiting.stdin.append(base64.b64decode(stream.text or ""))
                return 200, _envelope(ACTION_SEND + "Response", message_id, "<rsp:SendResponse/>")
            if action == ACTION_SIGNAL:
                return 200, _envelope(ACTION_SIGNAL + "Response", message_id,
                                      "<rsp:SignalResponse/>")
        return 500, _fault(message_id, 2150858770, "ActionNotSupported", f"unknown action {action}")


class PlainWebServer:
    """A web server on 127.0.0.1 that answers every request HTTP 200 with a page (not WS-Man)."""

    def __init__(self) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length", "0"))
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(WEB_PAGE)))
                self.end_headers()
                self.wfile.write(WEB_PAGE)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_ntlm_user_file(path: str, users: dict[str, str], domain: str = "") -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{domain}:{user}:{password}\n" for user, password in users.items())
    os.chmod(path, 0o600)
    return path
