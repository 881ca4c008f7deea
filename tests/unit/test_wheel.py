"""The built wheel carries templates/ and the example inventories and renders from them."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_renders_a_template(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("arpfix-*.whl"))
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    import jinja2
    import markupsafe

    # the installed arpfix must come from the fresh venv; jinja2 is borrowed only for rendering
    script = (
        "import sys; sys.path.append(sys.argv[1]); sys.path.append(sys.argv[2]);"
        "import arpfix, arpfix.templating as t;"
        "assert arpfix.__file__.startswith(sys.argv[3]), arpfix.__file__;"
        "print(t.data_dir('templates'));"
        "print('renders', 'emit_facts()' in t.render('linux/facts.sh.j2', embedded=False));"
        "import os; print(sorted(os.listdir(t.data_dir('inventory'))))"
    )
    result = subprocess.run(
        [str(python), "-c", script, str(Path(jinja2.__file__).parents[1]), str(Path(markupsafe.__file__).parents[1]),
         str(fresh)],
        capture_output=True, text=True, cwd=str(tmp_path),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{fresh}" in out.splitlines()[0] and "_data/templates" in out.splitlines()[0]
    assert "renders True" in out
    assert "sharescan.yml" in out
