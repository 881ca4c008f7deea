"""Fixtures: a WS-Man test server on 127.0.0.1 that the real pywinrm client talks to."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator

import pytest

from arpfix.secrets import SecretRef
from arpfix.settings import Host, WinrmSettings
from tests.winrm.wsman_server import WsmanServer, write_ntlm_user_file

USER = "arpfix"
PASSWORD = "s3cret-Pass-ïü"


def json_handler(document: dict | None = None) -> Callable[[str], tuple[str, str, int]]:
    payload = json.dumps(document or {"ok": True})
    return lambda script: (payload + "\r\n", "", 0)


@pytest.fixture
def wsman() -> Iterator[Callable[..., WsmanServer]]:
    """Factory: wsman(handler, auth="basic"|"ntlm") -> a started server (stopped at teardown)."""
    servers: list[WsmanServer] = []

    def make(handler=None, *, auth: str = "basic") -> WsmanServer:
        server = WsmanServer(handler or json_handler(), auth=auth, users={USER: PASSWORD})
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def ntlm_users(tmp_path, monkeypatch) -> str:
    path = write_ntlm_user_file(str(tmp_path / "ntlm-users"), {USER: PASSWORD})
    monkeypatch.setenv("NTLM_USER_FILE", path)
    return path


def make_host(port: int, *, auth: str = "basic", scheme: str = "http", password: str = PASSWORD,
              **winrm) -> Host:
    secret = SecretRef("plaintext", "test", _value=password)
    settings = WinrmSettings(scheme=scheme, port=port, auth=auth, user=USER, password=secret,
                             connect_timeout=3, operation_timeout=20, **winrm)
    return Host(name="win1", platform="windows", address=ipaddress.ip_address("127.0.0.1"),
                connect="127.0.0.1", winrm=settings)
