"""known_hosts read once per run: the same keys paramiko's own loader finds, for plain, hashed and
[host]:port names, and a fresh read when the file changes (trust on first use appends to it)."""

from __future__ import annotations

import os

import paramiko
import pytest
from paramiko.hostkeys import HostKeys

from arpfix.transport.ssh import KnownHosts, known_hosts


@pytest.fixture(scope="module")
def keys():
    return [paramiko.RSAKey.generate(1024) for _ in range(3)]


def line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def test_lookup_matches_paramikos_loader(tmp_path, keys):
    a, b, c = keys
    path = tmp_path / "known_hosts"
    path.write_text(
        "# comment\n\n"
        + line("10.0.0.1", a)
        + line("10.0.0.1", b)  # same type again: the first line wins, as in paramiko
        + line("[10.0.0.2]:2222", b)
        + line(HostKeys.hash_host("10.0.0.3"), c)
        + line("web1,10.0.0.4", a)
        + "garbage line that is not a key\n"
    )
    ours, theirs = KnownHosts(str(path)), HostKeys(str(path))
    for name in ("10.0.0.1", "[10.0.0.2]:2222", "10.0.0.2", "10.0.0.3", "web1", "10.0.0.4", "10.0.0.9", "nowhere"):
        expected = {t: k.get_base64() for t, k in (theirs.lookup(name) or {}).items()}
        assert {t: k.get_base64() for t, k in ours.lookup(name).items()} == expected, name
    assert ours.lookup("10.0.0.3")["ssh-rsa"].get_base64() == c.get_base64()


def test_a_corrupt_key_line_is_skipped_not_fatal(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_text("10.0.0.9 ssh-rsa not-base64!!\n" + line("10.0.0.1", keys[0]))
    with pytest.raises(Exception):  # noqa: B017 - paramiko's loader stops here
        HostKeys(str(path))
    ours = KnownHosts(str(path))
    assert ours.lookup("10.0.0.9") == {} and ours.lookup("10.0.0.1")["ssh-rsa"].get_base64() == keys[0].get_base64()


def test_the_file_is_read_again_when_it_changes(tmp_path, keys):
    a, b, _ = keys
    path = tmp_path / "known_hosts"
    path.write_text(line("10.0.0.1", a))
    first = known_hosts(str(path))
    assert known_hosts(str(path)) is first  # one parse per run
    with open(path, "a") as handle:
        handle.write(line("10.0.0.5", b))
    os.utime(path, ns=(1, 1))  # even within the same clock tick, size and mtime differ
    assert known_hosts(str(path)).lookup("10.0.0.5")["ssh-rsa"].get_base64() == b.get_base64()
