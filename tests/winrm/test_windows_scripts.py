"""Facts / apply / rollback scripts run through the real transport; asserted as captured on the wire."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from arpfix.errors import TransportError
from arpfix.platforms.windows import WindowsPlatform
from arpfix.quoting import ps_quote
from arpfix.secrets import SecretRef
from arpfix.settings import Host, Inventory, Service, Vip, WinrmSettings
from arpfix.transport.winrm import WinrmTransport
from tests.winrm.conftest import PASSWORD, USER

CASES = Path(__file__).parent.parent / "unit" / "windows_cases"
PLATFORM = WindowsPlatform()


def setup(port: int, name: str = "ss1", vip_name: str = "sharescan"):
    winrm = WinrmSettings(scheme="http", port=port, auth="ntlm", user=USER,
                          password=SecretRef("plaintext", "t", _value=PASSWORD))
    host = Host(name=name, platform="windows", address=ipaddress.ip_address("192.0.2.11"),
                connect="127.0.0.1", winrm=winrm, keep_bindings=("ms_server",))
    vip = Vip(vip_name, ipaddress.ip_address("192.0.2.100"),
              (Service("tcp", 443), Service("tcp", 80)), (host.name,))
    return host, Inventory(path="x", hosts={host.name: host}, groups={}, vips=(vip,))


def raw_case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())["raw"]


def body(script: str) -> str:
    """The main block of a captured script (after the function definitions)."""
    return script[script.rindex("\ntry {"):]


def test_facts_plan_apply_round_trip_over_the_wire(wsman, ntlm_users) -> None:
    answers = iter([raw_case("fresh_server2019"), raw_case("compliant")])
    server = wsman(lambda script: (json.dumps(next(answers)) + "\r\n", "", 0), auth="ntlm")
    host, inventory = setup(server.port)
    t = WinrmTransport(host)
    facts = PLATFORM.parse_facts(t.run_script(PLATFORM.facts_script(host, inventory)))
    changes = PLATFORM.plan(facts, host, inventory)
    assert changes[0].subject == "loopback adapter"
    after = PLATFORM.parse_facts(t.run_script(PLATFORM.apply_script(facts, host, inventory,
                                                                    changes)))
    assert PLATFORM.plan(after, host, inventory) == []

    facts_script, apply_script = server.scripts
    # facts is read-only: not one cmdlet that changes anything, anywhere in the script
    for mutating in ("Set-NetIPInterface", "New-NetIPAddress", "Set-NetIPAddress",
                     "Remove-NetIPAddress", "Rename-NetAdapter", "Disable-NetAdapterBinding",
                     "Enable-NetAdapterBinding", "Set-DnsClient", "New-NetFirewallRule",
                     "Set-NetFirewallRule", "Remove-NetFirewallRule", "Invoke-CimMethod",
                     "Add-Type", "pnputil", "Set-Acl", "Remove-Item", "Move-Item", "New-Item",
                     "WriteAllText", "SetupApi"):
        assert mutating.lower() not in facts_script.lower(), mutating
    assert "ConvertTo-Json -Depth 6 -Compress" in facts_script
    assert "Get-NetAdapter" in facts_script and "Get-NetTCPConnection -State Listen" in facts_script

    main = body(apply_script)
    order = [main.index(step) for step in ("New-ArpfixLoopback $J", "Add-ArpfixVip $J",
                                           "Set-ArpfixLoopbackSettings $J", "Set-ArpfixNic $J",
                                           "Set-ArpfixFirewall $J")]
    assert order == sorted(order)  # adapter, address, weak host..., NIC, firewall
    assert main.index("Get-ArpfixFacts") > order[-1]  # ends by printing the new facts

    # the address is created WITH SkipAsSource (not Set- afterwards, the public-script bug)
    new_ip = [line for line in apply_script.splitlines()
              if "New-NetIPAddress " in line and not line.lstrip().startswith("#")]
    assert new_ip and all("-SkipAsSource $true" in line for line in new_ip)
    # journal before every mutation inside each step function
    for function, mutation in (("Add-ArpfixVip", "New-NetIPAddress"),
                               ("Set-ArpfixIpInterface", "Set-NetIPInterface"),
                               ("Set-ArpfixLoopbackSettings", "Set-DnsClient"),
                               ("Set-ArpfixBindings", "Disable-NetAdapterBinding"),
                               ("Set-ArpfixFirewall", "New-NetFirewallRule"),
                               ("New-ArpfixLoopback", "RegisterLoopback")):
        start = apply_script.index(f"function {function}")
        end = apply_script.index("\n}\n", start)
        text = apply_script[start:end]
        assert text.index("Journal") < text.index(mutation), (function, mutation)
    # no devcon, no downloads; SetupAPI sequence present
    for needle in ("SetupDiCreateDeviceInfoList", "DICD_GENERATE_ID", "SPDRP_HARDWAREID",
                   '"*MSLOOP\\0\\0"', "DIF_REGISTERDEVICE", "netloop.inf",
                   "4d36e972-e325-11ce-bfc1-08002be10318"):
        assert needle in apply_script
    lowered = "\n".join(line for line in apply_script.lower().splitlines()
                        if not line.lstrip().startswith(("#", "//")))
    for banned in ("devcon", "invoke-webrequest", "install-module", "downloadstring", "chocolatey",
                   "invoke-expression", "iex "):
        assert banned not in lowered
    assert "'S-1-5-32-544', 'S-1-5-18'" in apply_script  # journal ACL: Administrators + SYSTEM


def test_rollback_script_over_the_wire(wsman, ntlm_users) -> None:
    server = wsman(lambda script: (json.dumps(raw_case("fresh_server2019")), "", 0), auth="ntlm")
    host, _ = setup(server.port)
    facts = PLATFORM.parse_facts(raw_case("compliant"))
    undo = PLATFORM.rollback_plan(facts, host)
    WinrmTransport(host).run_script(PLATFORM.rollback_script(facts, host, undo))
    script = server.scripts[0]
    main = body(script)
    assert "[array]::Reverse($entries)" in main
    order = [main.index(s) for s in ("'firewall' {", "'ipinterface' {", "'address' {",
                                     "Remove-ArpfixDevice $id", "Remove-Item -LiteralPath $AJ")]
    assert order == sorted(order)
    remove = script[script.index("function Remove-ArpfixDevice"):]
    assert "pnputil.exe /remove-device" in remove
    assert "[ArpfixSetupApi]::RemoveDevice($InstanceId)" in remove  # fallback before Windows 10 2004
    assert "$current -ne [string]$e.after" in main  # guard: someone else's value wins
    assert main.rindex("Get-ArpfixFacts") > order[-1]


@pytest.mark.parametrize("hostile", ["x'; Remove-Item C:\\ -Recurse; '", "\u2019$(calc)\u2018",
                                     "a`nb\nc;d"])
def test_inventory_values_on_the_wire_are_quoted_literals(wsman, ntlm_users, hostile) -> None:
    server = wsman(lambda script: (json.dumps(raw_case("compliant")), "", 0), auth="ntlm")
    host, inventory = setup(server.port, name="ss1" + hostile, vip_name="vip" + hostile)
    facts = PLATFORM.parse_facts(raw_case("fresh_server2019"))
    WinrmTransport(host).run_script(
        PLATFORM.apply_script(facts, host, inventory, PLATFORM.plan(facts, host, inventory)))
    script = server.scripts[0]
    remainder = script
    for value in (host.name, "vip" + hostile, "192.0.2.100", "192.0.2.11", "ms_server", "443"):
        quoted = ps_quote(value)
        assert quoted in script
        remainder = remainder.replace(quoted, "'<literal>'")
    # once the quoted literals are blanked out, nothing of the hostile text is left anywhere
    for fragment in ("Remove-Item C:\\", "$(calc)", "a`nb", "192.0.2.100", "192.0.2.11"):
        assert fragment not in remainder


def test_chunked_apply_script_arrives_intact(wsman, ntlm_users) -> None:
    server = wsman(lambda script: (json.dumps(raw_case("compliant")), "", 0), auth="ntlm")
    host, inventory = setup(server.port)
    facts = PLATFORM.parse_facts(raw_case("fresh_server2019"))
    script = PLATFORM.apply_script(facts, host, inventory, PLATFORM.plan(facts, host, inventory))
    t = WinrmTransport(host)
    assert len(t.commands_for(script)) > 2  # too long for one command line
    t.run_script(script)
    assert script in server.scripts[0]


def case_inventory(name: str, port: int):
    """Host and VIPs of a windows case, reachable at the test server."""
    from tests.unit.test_windows_cases import build

    case = json.loads((CASES / f"{name}.json").read_text())
    host, inventory = build(case)
    winrm = WinrmSettings(scheme="http", port=port, auth="ntlm", user=USER,
                          password=SecretRef("plaintext", "t", _value=PASSWORD))
    host = Host(name=host.name, platform="windows", address=host.address, connect="127.0.0.1",
                winrm=winrm, keep_bindings=host.keep_bindings)
    return host, Inventory(path="x", hosts={host.name: host}, groups={}, vips=inventory.vips)


def test_ipv6_apply_converges_over_the_wire(wsman, ntlm_users) -> None:
    """Windows keeps reporting Dhcp Enabled on the IPv6 interface after the apply (static
    addresses only): the apply must still end with nothing pending and a compliant audit."""
    answers = iter([raw_case("ipv6_vip"), raw_case("ipv6_compliant_dhcp_reported_enabled")])
    server = wsman(lambda script: (json.dumps(next(answers)) + "\r\n", "", 0), auth="ntlm")
    host, inventory = case_inventory("ipv6_compliant_dhcp_reported_enabled", server.port)
    t = WinrmTransport(host)
    facts = PLATFORM.parse_facts(t.run_script(PLATFORM.facts_script(host, inventory)))
    changes = PLATFORM.plan(facts, host, inventory)
    assert "loopback ipv6 Dhcp" not in [c.subject for c in changes]
    after = PLATFORM.parse_facts(t.run_script(PLATFORM.apply_script(facts, host, inventory, changes)))
    assert PLATFORM.plan(after, host, inventory) == []
    assert all(f.ok or f.severity == "warning" for f in PLATFORM.audit(after, host, inventory))
    apply_script = server.scripts[1]
    assert "if ($family -eq 'IPv4') { Set-ArpfixIpInterface $Journal $Lo $family 'Dhcp'" in apply_script


def test_constrained_language_host_is_read_and_then_blocked(wsman, ntlm_users) -> None:
    server = wsman(lambda script: (json.dumps(raw_case("constrained_language")) + "\r\n", "", 0),
                   auth="ntlm")
    host, inventory = case_inventory("constrained_language", server.port)
    t = WinrmTransport(host)
    facts = PLATFORM.parse_facts(t.run_script(PLATFORM.facts_script(host, inventory)))
    assert facts["language_mode"] == "ConstrainedLanguage"
    changes = PLATFORM.plan(facts, host, inventory)
    assert [(c.subject, c.action) for c in changes] == [("powershell language mode", "blocked")]
    with pytest.raises(TransportError) as raised:
        PLATFORM.apply_script(facts, host, inventory, changes)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(
        "ss1: PowerShell is in ConstrainedLanguage mode (AppLocker/WDAC): arpfix needs FullLanguage "
        "to create the loopback adapter;")
    # what ran there used no Add-Type and no .NET calls ConstrainedLanguage forbids
    facts_script = server.scripts[0]
    facts_script = facts_script[facts_script.index("# arpfix facts"):]  # after the transport's prelude
    for banned in ("Add-Type", "[IO.File]", "[Convert]", "New-Object"):
        assert banned not in facts_script
