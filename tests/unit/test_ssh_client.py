"""The SSH client's own start-up and per-connection costs: paramiko loaded without what arpfix does not
use, the key file parsed once per run, AES-GCM offered first. Each keeps paramiko's behaviour."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import arpfix.transport.ssh as ssh


def test_paramiko_loads_without_invoke_or_importlib_metadata_and_knows_its_version():
    code = ("import sys, arpfix.transport.ssh, paramiko; "
            "print(paramiko.__version__, 'invoke' in sys.modules, 'importlib.metadata' in sys.modules); "
            "import importlib.metadata as m; print(m.version('paramiko'), m.__file__.endswith('__init__.py'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = result.stdout.split("\n")[:2]
    version, invoke, metadata = first.split()
    assert invoke == "False"
    real, is_real = second.split()
    assert version == real and is_real == "True"  # the real importlib.metadata is there for whoever asks later
    if metadata == "True":  # something at start-up (an editable install's finder) had imported it already
        pytest.skip("importlib.metadata was imported before arpfix (editable install); nothing to avoid here")


def test_the_version_comes_from_pip_s_dist_info_folder_or_not_at_all(tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ssh._installed_version("demo") is None  # no dist-info: paramiko is imported as it is
    (tmp_path / "demo-1.2.3.dist-info").mkdir()
    assert ssh._installed_version("demo") == "1.2.3"
    (tmp_path / "demo-1.2.4.dist-info").mkdir()
    assert ssh._installed_version("demo") is None  # two: ambiguous, not guessed


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_a_key_file_is_parsed_once_until_it_changes(key_file, monkeypatch):
    monkeypatch.setattr(ssh, "_key_cache", {})
    first = ssh.private_key(str(key_file), None)
    assert first is not None and ssh.private_key(str(key_file), None) is first
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], input="y\n", text=True,
                   check=True, capture_output=True)
    second = ssh.private_key(str(key_file), None)
    assert second is not None and second.get_base64() != first.get_base64()


def test_a_key_it_cannot_parse_is_left_to_paramiko(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh, "_key_cache", {})
    assert ssh.private_key(str(tmp_path / "missing"), None) is None
    encrypted = tmp_path / "id_locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "sekrit", "-f", str(encrypted)], check=True)
    assert ssh.private_key(str(encrypted), None) is None  # paramiko then says what it says today
    assert ssh.private_key(str(encrypted), "wrong") is None
    assert ssh.private_key(str(encrypted), "sekrit") is not None
    assert all("sekrit" not in repr(key) for key in ssh._key_cache)  # the cache is not keyed by the secret


def test_aes_gcm_is_offered_first_then_paramiko_s_own_order():
    left, right = socket.socketpair()
    try:
        transport = ssh.prefer_aead(left)
        offered = transport.get_security_options().ciphers
        assert offered[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
        import paramiko

        rest = tuple(c for c in paramiko.Transport._preferred_ciphers if not c.endswith("-gcm@openssh.com"))
        assert offered[2:] == rest
    finally:
        left.close()
        right.close()
