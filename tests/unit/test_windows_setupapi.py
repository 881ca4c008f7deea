"""The Add-Type C# of the SetupAPI helper, compiled as Windows PowerShell 5.1 would compile it.

Windows PowerShell 5.1's Add-Type uses the .NET Framework C# compiler (C# 5); mono's `mcs` with
`-langversion:5 -warnaserror+` rejects anything newer and every warning. Skipped only when mcs is
absent (Debian package mono-mcs, in dev.sh's APT_PACKAGES, so CI has it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_windows_script_syntax import scripts


def csharp(script: str) -> str:
    start = script.index("$ArpfixSetupApiSource = @'\n") + len("$ArpfixSetupApiSource = @'\n")
    return script[start:script.index("\n'@", start)]


@pytest.mark.parametrize("name", ["apply", "rollback"])
def test_setupapi_csharp_compiles_as_csharp5_without_warnings(name: str, tmp_path: Path) -> None:
    mcs = shutil.which("mcs")
    if mcs is None:
        pytest.skip("mcs not installed (apt-get install mono-mcs)")
    source = tmp_path / "setupapi.cs"
    source.write_text(csharp(scripts()[name]))
    result = subprocess.run([mcs, "-langversion:5", "-warnaserror+", "-target:library",
                             f"-out:{tmp_path / 'setupapi.dll'}", str(source)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "setupapi.dll").stat().st_size > 0


def test_the_helper_offers_exactly_what_the_scripts_call() -> None:
    code = csharp(scripts()["apply"])
    for signature in ("public static string RegisterLoopback(string marker)",
                      "public static bool InstallDriver(string instanceId, string infPath)",
                      "public static void RemoveDevice(string instanceId)"):
        assert signature in code
    assert "UpdateDriverForPlugAndPlayDevices" not in code


PROBE = """
using System;
using System.Runtime.InteropServices;
public static class Probe
{
    public static void Main()
    {
        Console.WriteLine(IntPtr.Size);
        Console.WriteLine(Marshal.SizeOf(typeof(ArpfixSetupApi.SP_DEVINFO_DATA)));
        Console.WriteLine(Marshal.SizeOf(typeof(ArpfixSetupApi.SP_DEVINSTALL_PARAMS)));
        Console.WriteLine(Marshal.OffsetOf(typeof(ArpfixSetupApi.SP_DEVINSTALL_PARAMS), "DriverPath"));
        Console.WriteLine(Marshal.SizeOf(typeof(ArpfixSetupApi.SP_DRVINFO_DATA)));
        Console.WriteLine(Marshal.OffsetOf(typeof(ArpfixSetupApi.SP_DRVINFO_DATA), "DriverVersion"));
    }
}
"""


def test_setupapi_structures_have_the_x64_sizes_windows_checks(tmp_path: Path) -> None:
    """SetupAPI rejects a structure whose cbSize is not sizeof() of its own definition. The x64
    sizes follow from the SDK definitions (learn.microsoft.com: SP_DEVINFO_DATA,
    SP_DEVINSTALL_PARAMS_W, SP_DRVINFO_DATA_V2_W) with natural alignment (setupapi.h packs to 8
    on _WIN64): 32, 584 (DriverPath at 60) and 1568 (DriverVersion at 1560), the values a public
    static_assert against the SDK headers states too. Marshalled here by mono on x64."""
    mcs, mono = shutil.which("mcs"), shutil.which("mono")
    if mcs is None or mono is None:
        pytest.skip("mcs / mono not installed (apt-get install mono-mcs)")
    (tmp_path / "setupapi.cs").write_text(csharp(scripts()["apply"]))
    (tmp_path / "probe.cs").write_text(PROBE)
    built = subprocess.run([mcs, "-langversion:5", f"-out:{tmp_path / 'probe.exe'}",
                            str(tmp_path / "setupapi.cs"), str(tmp_path / "probe.cs")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    ran = subprocess.run([mono, str(tmp_path / "probe.exe")], capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    pointer, devinfo, installparams, driverpath, drvinfo, driverversion = map(int, ran.stdout.split())
    if pointer != 8:
        pytest.skip("not a 64-bit runtime")
    assert (devinfo, installparams, driverpath, drvinfo, driverversion) == (32, 584, 60, 1568, 1560)
