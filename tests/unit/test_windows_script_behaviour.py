"""What the rendered Windows scripts do, asserted on their text (no PowerShell here to run them).

Each test pins one behaviour issue 13 names, after what Windows does (docs/windows.md lists the
evidence): the driver goes onto the one device arpfix created, quietly; the IP interface is
waited for; a missing target fails its step; the journal is replaced atomically and knows every
device; a host-side lock; Add-Type only when a device is created or removed; the facts script is
fit for ConstrainedLanguage mode.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.test_windows_script_syntax import scripts


def function(script: str, name: str) -> str:
    start = script.index(f"function {name}")
    return script[start:script.index("\n}\n", start)]


def main_block(script: str) -> str:
    return script[script.rindex("\ntry {"):]


def code_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith(("#", "//")))


def test_driver_goes_onto_the_one_new_device_quietly() -> None:
    apply = scripts()["apply"]
    # UpdateDriverForPlugAndPlayDevices updates EVERY device with the hardware id, i.e. another
    # application's *MSLOOP adapter too: no call of it, no declaration, anywhere
    assert "UpdateDriverForPlugAndPlayDevices" not in code_lines(apply)
    assert "INSTALLFLAG_FORCE" not in apply
    install = apply[apply.index("public static bool InstallDriver(string instanceId"):]
    install = install[:install.index("\n    }\n")]
    order = [install.index(step) for step in (
        "SetupDiOpenDeviceInfoW(set, instanceId",            # that one device, by instance id
        "DI_ENUMSINGLEINF | DI_QUIETINSTALL",                 # netloop.inf only, no UI
        "SetupDiSetDeviceInstallParamsW",
        "SetupDiBuildDriverInfoList(set, ref data, SPDIT_COMPATDRIVER)",
        "SetupDiEnumDriverInfoW",
        "DiInstallDevice(IntPtr.Zero, set, ref data, ref driver, 0,")]   # no window, no search UI
    assert order == sorted(order)
    assert "DIIDFLAG_SHOWSEARCHUI" not in code_lines(apply)
    new = function(apply, "New-ArpfixLoopback")
    assert "[ArpfixSetupApi]::InstallDriver($instanceId, $inf)" in new


def test_device_is_marked_and_journaled_before_and_right_after_it_exists() -> None:
    apply = scripts()["apply"]
    register = apply[apply.index("public static string RegisterLoopback(string marker)"):]
    assert register.index("SPDRP_LOCATION_INFORMATION, marker") < register.index("DIF_REGISTERDEVICE, set")
    new = function(apply, "New-ArpfixLoopback")
    steps = [new.index(s) for s in ("state = 'creating'", "Save-ArpfixJournal $Journal",
                                    "[ArpfixSetupApi]::RegisterLoopback($P.Marker)",
                                    "$Journal.adapter.instance_id = $instanceId",
                                    "Save-ArpfixJournal $Journal\n    $inf",
                                    "[ArpfixSetupApi]::InstallDriver(")]
    assert steps == sorted(steps)
    # a cut run's device is recognised by the marker: adopted (it has an adapter) or removed
    assert "Get-ArpfixMarkedDevices" in function(apply, "Find-ArpfixLoopback")
    orphans = function(apply, "Remove-ArpfixOrphans")
    assert "Get-ArpfixMarkedDevices" in orphans and "$Journal.adapter.instance_id" in orphans
    assert "Remove-ArpfixDevice $id" in orphans
    main = main_block(apply)
    assert main.index("Remove-ArpfixOrphans $J $lo") < main.index("New-ArpfixLoopback $J")


def test_ip_interface_is_waited_for_before_any_address_or_interface_step() -> None:
    apply = scripts()["apply"]
    wait = function(apply, "Wait-ArpfixIpInterface")
    assert "foreach ($family in $P.Families)" in wait and "AddSeconds(60)" in wait
    assert "no ' + $family + ' IP interface after 60 s" in wait and "throw" in wait
    main = main_block(apply)
    assert main.index("New-ArpfixLoopback $J") < main.index("Enable-ArpfixRequiredBindings $J $lo") < \
        main.index("Wait-ArpfixIpInterface $lo") < main.index("Add-ArpfixVip $J") < \
        main.index("Set-ArpfixLoopbackSettings $J")


@pytest.mark.parametrize("name", ["Set-ArpfixIpInterface", "Set-ArpfixLoopbackSettings",
                                  "Set-ArpfixBindings", "Add-ArpfixVip", "Set-ArpfixNic"])
def test_no_step_skips_silently_when_its_target_is_missing(name: str) -> None:
    text = code_lines(function(scripts()["apply"], name))
    # the old pattern: `if (-not $if) { return }`, `if ($dns -and ...)`, `if ($cfg -and ...)`
    targets = r"(if|dns|cfg|bindings|ip|check|stored)"
    assert not re.search(r"if \(-not \$" + targets + r"\) \{ (return|continue) \}", text), name
    assert not re.search(r"if \(\$(dns|cfg) -and", text), name
    for target in re.findall(r"if \(-not \$" + targets + r"\) \{ (\w+)", text):
        assert target[1] == "throw", (name, target)


def test_ipv6_dhcp_is_never_set() -> None:
    settings = function(scripts()["apply"], "Set-ArpfixLoopbackSettings")
    dhcp = [line for line in settings.splitlines() if "'Dhcp'" in line]
    assert dhcp and all("if ($family -eq 'IPv4')" in line for line in dhcp)


def test_bindings_are_read_again_after_changing_them() -> None:
    bindings = function(scripts()["apply"], "Set-ArpfixBindings")
    loop = bindings[bindings.index("for ($pass = 0; $pass -lt 3; $pass++)"):]
    assert loop.index("Get-NetAdapterBinding") < loop.index("Disable-NetAdapterBinding")
    assert "if (-not $changed) { return }" in loop
    assert "did not settle" in loop


def test_persistent_store_is_written_when_only_it_differs() -> None:
    ipif = function(scripts()["apply"], "Set-ArpfixIpInterface")
    assert "-PolicyStore PersistentStore" in ipif
    assert "Set-NetIPInterface @arguments -PolicyStore PersistentStore" in ipif


def test_journal_is_replaced_atomically() -> None:
    save = code_lines(function(scripts()["apply"], "Save-ArpfixJournal"))
    assert "Move-Item" not in save  # Windows PowerShell: deletes the destination, then renames
    assert "[IO.File]::Replace($tmp, $AJ, [NullString]::Value)" in save


@pytest.mark.parametrize("name", ["apply", "rollback"])
def test_host_side_lock_around_every_change(name: str) -> None:
    script = scripts()[name]
    enter = function(script, "Enter-ArpfixLock")
    assert "[IO.FileShare]::Read)" in enter  # others may read who holds it, never take it
    assert "another arpfix run holds the lock since " in enter
    main = main_block(script)
    action = "'apply'" if name == "apply" else "'rollback'"
    assert main.index(f"Enter-ArpfixLock {action}") < main.index("$J = ")
    assert main.count("Exit-ArpfixLock") == 2  # on success and in the catch


def test_rollback_removes_a_recorded_device_without_an_adapter_or_keeps_the_journal() -> None:
    main = main_block(scripts()["rollback"])
    assert "if (-not (Test-ArpfixDevice $id)) { continue }" in main  # the device, not its NetAdapter
    assert "Get-PnpDevice -InstanceId $InstanceId" in function(scripts()["rollback"], "Test-ArpfixDevice")
    assert "PnPDeviceID -eq $id" not in main
    assert "$_.Marker -eq $P.Marker" in main  # a cut run's unrecorded device too
    assert "if (-not $keepJournal -and (Test-Path -LiteralPath $AJ))" in main
    assert "journal kept" in main


@pytest.mark.parametrize("name", ["apply", "rollback"])
def test_add_type_only_when_a_device_is_created_or_removed(name: str) -> None:
    script = scripts()[name]
    lines = code_lines(script)
    assert lines.count("Add-Type -TypeDefinition") == 1
    assert lines.index("Add-Type -TypeDefinition") > lines.index("function Initialize-ArpfixSetupApi")
    users = [f for f in ("New-ArpfixLoopback", "Remove-ArpfixDevice")
             if f"function {f}" in script and "Initialize-ArpfixSetupApi" in function(script, f)]
    assert users == (["New-ArpfixLoopback", "Remove-ArpfixDevice"] if name == "apply"
                     else ["Remove-ArpfixDevice"])
    assert "Initialize-ArpfixSetupApi" not in main_block(script)


def test_facts_script_fits_constrained_language_mode() -> None:
    """about_Language_Modes: ConstrainedLanguage blocks Add-Type, New-Object of most types and
    static .NET calls such as [IO.File]::ReadAllText or [Convert]::FromBase64String."""
    facts = code_lines(scripts()["facts"])
    for banned in ("Add-Type", "New-Object", "[IO.", "[Convert]", "[System.", "[Text."):
        assert banned not in facts, banned
    assert not re.search(r"\]::", facts), re.search(r".{20}\]::.{20}", facts)
    assert "language_mode = [string]$ExecutionContext.SessionState.LanguageMode" in facts
    assert "Get-Content -LiteralPath $Path -Raw -Encoding UTF8" in facts  # the journal, read


def test_facts_read_what_audit_needs_from_both_stores_and_the_firewall_profiles() -> None:
    facts = scripts()["facts"]
    assert "foreach ($s in 'ActiveStore', 'PersistentStore')" in facts
    assert "Get-NetIPInterface -PolicyStore $s" in facts
    assert "Get-NetFirewallProfile -PolicyStore ActiveStore" in facts and "AllowLocalFirewallRules" in facts
    assert "DEVPKEY_Device_LocationInfo" in facts  # the device marker
