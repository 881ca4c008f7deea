"""The chunk loader for scripts too long for one command line (issue 13, hardened hosts): under
ConstrainedLanguage (AppLocker/WDAC) it must decode and run the upload without any .NET call,
because the facts script (about 4.6 KB) is always too long for one command line."""

from __future__ import annotations

import base64
import re

from arpfix.inventory import load_inventory
from arpfix.platforms import get_platform
from arpfix.transport.winrm import WinrmTransport
from tests.unit.test_windows_script_syntax import grammar_errors

NET_CALLS = re.compile(r"\[(IO\.|Convert\]|ScriptBlock\]|Text\.|System\.)|New-Object|Add-Type", re.IGNORECASE)


def loader_of(script: str) -> str:
    transport = WinrmTransport.__new__(WinrmTransport)  # only commands_for is used
    commands = transport.commands_for(script)
    assert len(commands) >= 2
    return base64.b64decode(commands[-1].rsplit(" ", 1)[1]).decode("utf-16-le")


def test_the_facts_script_needs_the_loader():
    inventory = load_inventory("inventory/sharescan.yml")
    host = next(h for h in inventory.hosts.values() if h.platform == "windows")
    transport = WinrmTransport.__new__(WinrmTransport)
    assert len(transport.commands_for(get_platform("windows").facts_script(host, inventory))) > 1


def test_the_constrained_language_branch_makes_no_net_call():
    loader = loader_of("x" * 20000)
    full, constrained = loader.split("} else {", 1)
    assert "$ExecutionContext.SessionState.LanguageMode -eq 'FullLanguage'" in full
    assert NET_CALLS.search(full)  # the FullLanguage branch may use .NET (and does)
    assert not NET_CALLS.search(constrained), NET_CALLS.search(constrained)
    assert "certutil.exe -f -decode" in constrained and "Invoke-Expression $s" in constrained
    assert "Remove-Item" in constrained  # neither the upload nor the decoded script is left in %TEMP%


def test_the_loader_parses_with_the_powershell_grammar():
    assert grammar_errors(loader_of("x" * 20000)) == []
