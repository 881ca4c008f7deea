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
