"""The real pywinrm client (through WinrmTransport) against the WS-Man test server, real HTTP."""

from __future__ import annotations

import json
import socket
import time

import pytest

from arpfix.errors import TransportError
from arpfix.transport.winrm import COMMAND_LINE_LIMIT, WinrmTransport, clean_clixml
from tests.winrm.conftest import PASSWORD, json_handler, make_host

CLIXML = (
    "#< CLIXML\r\n"
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    "<T>System.Object</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules "
    "for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD>"
    "</PR></MS></Obj></Objs>"
)
CLIXML_ERROR = (
    "#< CLIXML\r\n"
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<S S="Error">Set-NetIPInterface : Access is denied._x000D__x000A_</S>'
    '<S S="Error">    + CategoryInfo : PermissionDenied_x000D__x000A_</S></Objs>'
)


def transport(server, **kwargs) -> WinrmTransport:
    insecure = kwargs.pop("insecure", False)
    return WinrmTransport(make_host(server.port, auth=server.auth, **kwargs), insecure=insecure)


def test_basic_over_http_is_refused_without_insecure(wsman) -> None:
    server = wsman(auth="basic")
    with pytest.raises(TransportError, match="Basic authentication over HTTP") as err:
        transport(server)
    assert PASSWORD not in str(err.value)
    assert server.actions == []  # refused before a single packet


def test_basic_with_insecure_runs_a_script(wsman) -> None:
    server = wsman(json_handler({"hello": "world"}), auth="basic")
    t = transport(server, insecure=True)
    assert t.run_script("Write-Output 'x'") == {"hello": "world"}
    t.close()
    assert server.actions == ["Create", "Command", "Receive", "Signal", "Delete"]
    assert server.scripts[0].endswith("Write-Output 'x'\nexit $global:ArpfixExitCode\n")
    assert "powershell -NoProfile -NonInteractive -EncodedCommand " in server.commands[0]


def test_ntlm_with_message_encryption(wsman, ntlm_users) -> None:
    server = wsman(json_handler({"enc": True}), auth="ntlm")
    t = transport(server)  # http + ntlm -> message_encryption 'always'
    assert t._kwargs["message_encryption"] == "always"
    assert t.run_script("Get-Date") == {"enc": True}
    assert server.encrypted_requests >= 5  # every WS-Man message went sealed


def test_receive_timeout_is_retried(wsman) -> None:
    server = wsman(json_handler({"late": 1}), auth="basic")
    server.receive_timeouts = 2
    assert transport(server, insecure=True).run_script("Start-Sleep 1") == {"late": 1}
    assert server.actions.count("Receive") == 3


def test_output_over_several_receives(wsman, ntlm_users) -> None:
    document = {"items": list(range(500)), "text": "é" * 50}
    server = wsman(json_handler(document), auth="ntlm")
    server.split_output = 5
    assert transport(server).run_script("x") == document
    assert server.actions.count("Receive") == 5


def test_clixml_progress_on_stderr_with_exit_0_is_cleaned(wsman) -> None:
    server = wsman(lambda s: ('{"ok": 1}\r\n', CLIXML, 0), auth="basic")
    assert transport(server, insecure=True).run_script("x") == {"ok": 1}


def test_error_record_and_nonzero_exit_become_one_clear_line(wsman) -> None:
    server = wsman(lambda s: ("", CLIXML_ERROR, 1), auth="basic")
    with pytest.raises(TransportError) as err:
        transport(server, insecure=True).run_script("x")
    message = str(err.value)
    assert message.startswith("win1: remote script failed: ")
    assert "CLIXML" not in message and "\n" not in message and "_x000D_" not in message


def test_error_record_with_exit_0_is_a_failure(wsman) -> None:
    server = wsman(lambda s: ('{"ok": 1}', CLIXML_ERROR, 0), auth="basic")
    with pytest.raises(TransportError, match="reported an error: Set-NetIPInterface"):
        transport(server, insecure=True).run_script("x")


def test_script_error_document_is_reported(wsman) -> None:
    server = wsman(lambda s: ('{"error": "apply: access denied"}\r\n', "", 1), auth="basic")
    with pytest.raises(TransportError, match="remote script failed: apply: access denied"):
        transport(server, insecure=True).run_script("x")


def test_wrong_password_is_a_clear_failure_without_the_password(wsman, ntlm_users) -> None:
    server = wsman(auth="ntlm")
    wrong = "Wr0ng-Secret-Value"
    with pytest.raises(TransportError) as err:
        transport(server, password=wrong).run_script("x")
    assert "authentication failed" in str(err.value)
    assert wrong not in str(err.value) and PASSWORD not in str(err.value)


def test_wrong_password_basic(wsman) -> None:
    server = wsman(auth="basic")
    with pytest.raises(TransportError, match="authentication failed") as err:
        transport(server, password="nope-nope", insecure=True).run_script("x")
    assert "nope-nope" not in str(err.value)


def test_server_disappears_mid_command(wsman, ntlm_users) -> None:
    server = wsman(auth="ntlm")
    server.die_on_receive = True
    with pytest.raises(TransportError, match="connection lost during the script") as err:
        transport(server).run_script("x")
    assert PASSWORD not in str(err.value)


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(TransportError, match="connection refused"):
        WinrmTransport(make_host(port, auth="ntlm")).run_script("x")


def test_long_script_is_uploaded_in_chunks_and_arrives_intact(wsman, ntlm_users) -> None:
    server = wsman(auth="ntlm")
    body = "\n".join(f"$v{i} = 'line {i} with ’quotes’ and ü'" for i in range(900))
    t = transport(server)
    assert len(t.commands_for(body)) > 2
    t.run_script(body)
    assert len(server.scripts) == 1
    assert body in server.scripts[0]  # reassembled byte for byte
    assert all(len(c) <= COMMAND_LINE_LIMIT for c in server.commands)
    assert server.commands[0].startswith("echo ")
    assert server.actions.count("Create") == 1  # one shell for upload and run


def test_https_refuses_disabled_validation_without_insecure() -> None:
    with pytest.raises(TransportError, match="--insecure"):
        WinrmTransport(make_host(5986, auth="ntlm", scheme="https", cert_validation=False))
    t = WinrmTransport(make_host(5986, auth="ntlm", scheme="https", cert_validation=False),
                       insecure=True)
    assert t._kwargs["server_cert_validation"] == "ignore"
    t = WinrmTransport(make_host(5986, auth="ntlm", scheme="https", ca_bundle="/etc/ca.pem"))
    assert t._kwargs["server_cert_validation"] == "validate"
    assert t._kwargs["ca_trust_path"] == "/etc/ca.pem"


def test_certificate_auth_needs_https_and_files() -> None:
    with pytest.raises(TransportError, match="needs scheme https"):
        WinrmTransport(make_host(5985, auth="certificate", cert_pem="a", cert_key_pem="b"))
    with pytest.raises(TransportError, match="cert_pem and cert_key_pem"):
        WinrmTransport(make_host(5986, auth="certificate", scheme="https"))
    t = WinrmTransport(make_host(5986, auth="certificate", scheme="https", cert_pem="c.pem",
                                 cert_key_pem="k.pem"))
    assert t._kwargs["transport"] == "certificate" and t._kwargs["cert_pem"] == "c.pem"


def test_https_untrusted_certificate_is_a_clear_error(tmp_path) -> None:
    """A TLS listener with a self-signed certificate the client does not trust."""
    import ssl
    import subprocess
    import threading

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    done = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                           str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("openssl not available")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    t = WinrmTransport(make_host(listener.getsockname()[1], auth="ntlm", scheme="https"))
    with pytest.raises(TransportError, match="certificate not trusted .*give ca_bundle or --insecure"):
        t.run_script("x")
    listener.close()


def test_clean_clixml_keeps_plain_text_and_decodes_escapes() -> None:
    assert clean_clixml("plain error\n") == ("plain error\n", [])
    _, errors = clean_clixml(CLIXML_ERROR)
    assert errors[0] == "Set-NetIPInterface : Access is denied."
    assert clean_clixml(CLIXML) == ("", [])


def test_many_round_trips_are_fast(wsman) -> None:
    server = wsman(auth="basic")
    t = transport(server, insecure=True)
    start = time.monotonic()
    for _ in range(10):
        t.run_script("x")
    assert time.monotonic() - start < 5  # Nagle disabled on the server


def test_pywinrm_is_not_imported_by_the_cli_module() -> None:
    import subprocess
    import sys

    code = ("import sys, arpfix.transport.winrm, arpfix.platforms.windows; "
            "print('winrm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert json.loads("[]") == []


def test_script_time_limit(wsman) -> None:
    server = wsman(auth="basic")
    server.receive_timeouts = 10**6  # the command never finishes
    with pytest.raises(TransportError, match="did not finish within the time limit"):
        transport(server, insecure=True).run_script("x", timeout=0.3)


def test_missing_password_source_is_a_transport_error(monkeypatch) -> None:
    from dataclasses import replace

    from arpfix.secrets import SecretRef

    monkeypatch.delenv("ARPFIX_TEST_NO_SUCH_VAR", raising=False)
    host = make_host(5985, auth="ntlm")
    host = replace(host, winrm=replace(host.winrm,
                                       password=SecretRef("env", "ARPFIX_TEST_NO_SUCH_VAR")))
    with pytest.raises(TransportError, match="ARPFIX_TEST_NO_SUCH_VAR is not set"):
        WinrmTransport(host).run_script("x")


# -- Receive polling and answers that are not WS-Management (issue 13) -------------------------


def test_a_peer_that_times_out_at_once_is_polled_with_backoff(wsman) -> None:
    """A peer that answers every Receive `w:TimedOut` at once (no long poll) gets a bounded number of
    requests, at most about one a second once backed off, not a request per round trip."""
    server = wsman(auth="basic")
    server.receive_timeouts = 10**6  # every Receive: TimedOut, immediately
    with pytest.raises(TransportError, match="did not finish within the time limit"):
        transport(server, insecure=True).run_script("x", timeout=4)
    times = server.receive_times
    assert 3 <= len(times) <= 15, f"{len(times)} Receives in 4 s"
    last_two_seconds = [t for t in times if t >= times[-1] - 2]
    assert len(last_two_seconds) <= 4, f"{len(last_two_seconds)} Receives in the last 2 s"


def test_a_long_poll_is_answered_without_extra_waiting(wsman, monkeypatch) -> None:
    """A server that held the Receive (its OperationTimeout) is asked again at once: no backoff."""
    import arpfix.transport.winrm as winrm_module

    pauses: list[float] = []
    monkeypatch.setattr(winrm_module, "_pause", pauses.append)
    server = wsman(json_handler({"late": 2}), auth="basic")
    server.receive_timeouts = 1
    server.receive_delay = winrm_module.QUICK_RECEIVE_SECONDS + 0.1
    assert transport(server, insecure=True).run_script("x") == {"late": 2}
    assert pauses == []


def test_quick_timeouts_pause_longer_each_time_up_to_the_ceiling(wsman, monkeypatch) -> None:
    import arpfix.transport.winrm as winrm_module

    pauses: list[float] = []
    monkeypatch.setattr(winrm_module, "_pause", pauses.append)
    server = wsman(json_handler({"late": 3}), auth="basic")
    server.receive_timeouts = 12
    assert transport(server, insecure=True).run_script("x") == {"late": 3}
    assert len(pauses) == 12
    assert pauses == sorted(pauses) and pauses[0] < 0.2
    assert max(pauses) == winrm_module.RECEIVE_BACKOFF_MAX


@pytest.mark.parametrize("action", ["Create", "Command", "Receive"])
def test_a_web_page_where_ws_management_belongs_says_so(wsman, action) -> None:
    """HTTP 200 with a page (a proxy, IIS on the port): one clear line, not a time-out or a StopIteration."""
    server = wsman(auth="basic")
    server.html_for = {action}
    start = time.monotonic()
    with pytest.raises(TransportError, match="not a WS-Management endpoint") as err:
        transport(server, insecure=True).run_script("x", timeout=3)
    assert time.monotonic() - start < 2  # said at once, not after the time limit
    assert "\n" not in str(err.value) and "text/html" in str(err.value)


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_a_plain_web_server_is_not_a_ws_management_endpoint(auth, ntlm_users) -> None:
    from tests.winrm.wsman_server import PlainWebServer

    web = PlainWebServer()
    try:
        with pytest.raises(TransportError, match="not a WS-Management endpoint") as err:
            WinrmTransport(make_host(web.port, auth=auth), insecure=True).run_script("x", timeout=3)
    finally:
        web.stop()
    message = str(err.value)
    assert message.startswith("win1: ") and f"127.0.0.1:{web.port}/wsman" in message
    assert PASSWORD not in message


# -- a dropped connection mid-script (issue 13) -------------------------------------------------

UNKNOWN_OUTCOME = "the remote script may still be running or may have been stopped; run 'arpfix audit --limit win1'"


def test_a_dropped_connection_says_the_outcome_is_unknown_and_what_to_do(wsman, ntlm_users) -> None:
    server = wsman(auth="ntlm")
    server.die_on_receive = True
    with pytest.raises(TransportError) as err:
        transport(server).run_script("x")
    message = str(err.value)
    assert UNKNOWN_OUTCOME in message, message
    assert "\n" not in message and PASSWORD not in message


def test_a_read_timeout_mid_script_says_the_outcome_is_unknown(wsman) -> None:
    """The server holds the Receive longer than the read timeout: the same plain line."""
    server = wsman(auth="basic")
    t = transport(server, insecure=True)
    t._connect().transport.read_timeout_sec = (3.0, 0.5)  # (connect, read); really poll + 10 s
    server.receive_delay = 1.5
    with pytest.raises(TransportError) as err:
        t.run_script("x", timeout=30)
    assert "read timeout" in str(err.value) and UNKNOWN_OUTCOME in str(err.value)


def test_kerberos_over_http_is_sealed_and_a_missing_kerberos_library_is_one_clear_line(monkeypatch) -> None:
    import winrm.transport

    t = WinrmTransport(make_host(5985, auth="kerberos"))
    assert t._kwargs["message_encryption"] == "always"  # accepted over HTTP, never unencrypted
    monkeypatch.setattr(winrm.transport, "HAVE_KERBEROS", False)
    with pytest.raises(TransportError, match=r"install pywinrm\[kerberos\].*or use auth ntlm"):
        t.run_script("x")
