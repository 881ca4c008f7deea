"""The shipped example inventories pass `inventory check` and use a transport that works as shipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from arpfix.exitcodes import Exit
from arpfix.inventory import load_inventory
from arpfix.transport.winrm import WinrmTransport

SHARESCAN = Path(__file__).resolve().parents[2] / "inventory" / "sharescan.yml"


def test_the_sharescan_example_passes_inventory_check(tmp_path):
    # inventory check also reads the files the inventory names: the example's ~/.ssh/id_ed25519
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("not a real key: only its presence is checked\n")
    result = subprocess.run([sys.executable, "-m", "arpfix.cli", "inventory", "check", "-i", str(SHARESCAN)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == Exit.OK, result.stderr
    assert "2 windows" in result.stdout
    missing = subprocess.run([sys.executable, "-m", "arpfix.cli", "inventory", "check", "-i", str(SHARESCAN)],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path / "x")})
    assert missing.returncode == Exit.USAGE
    assert "sharescan.yml:29: defaults.ssh.key_file: ~/.ssh/id_ed25519: no such file" in missing.stderr


def test_the_sharescan_example_speaks_to_a_stock_windows_server():
    """A stock domain-joined Windows Server listens on HTTP 5985 with Kerberos/Negotiate and refuses
    unencrypted messages: the example uses exactly that, sealed by message encryption, and needs
    no --insecure."""
    inventory = load_inventory(str(SHARESCAN))
    windows = [h for h in inventory.hosts.values() if h.platform == "windows"]
    assert windows
    for host in windows:
        assert (host.winrm.scheme, host.winrm.port) == ("http", 5985)
        assert host.winrm.auth in ("ntlm", "kerberos")
        transport = WinrmTransport(host)  # validates; refuses what would need --insecure
        assert transport._kwargs["message_encryption"] == "always"
        assert transport.endpoint == f"http://{host.connect}:5985/wsman"


def test_the_sharescan_example_documents_https_as_the_hardened_choice():
    comments = [line.strip() for line in SHARESCAN.read_text().splitlines() if line.strip().startswith("#")]
    assert "#   scheme: https" in comments and "#   port: 5986" in comments
    assert any("Hardened choice" in line for line in comments)
