"""The shell helpers every Linux script shares, run by the real /bin/sh: jstr must turn any text
into the JSON string arpfix expects, by its process-free fast path and by awk alike."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpfix.templating import render

LIB = render("linux/lib.sh.j2")
ONE_LINE_PATH = "    *) printf '\"%s\"' \"$1\"; return 0 ;;\n"
pytestmark = pytest.mark.skipif(not shutil.which("awk"), reason="needs awk")


def expected(text: str) -> str:
    """awk's reading of the text: lines (a final newline ends the last one), control characters
    dropped, joined with newlines."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return "\n".join("".join(c for c in line if not "\x01" <= c <= "\x1f") for line in lines)


def jstr(text: str, *, awk_only: bool = False) -> str:
    # awk_only: a jstr_lines that always declines and a pattern that never takes the one-line path
    override = "jstr_lines() { return 1; }\n" if awk_only else ""
    script = LIB + override + 'jstr "$1"'
    if awk_only:
        assert ONE_LINE_PATH in script
        script = script.replace(ONE_LINE_PATH, "")
    done = subprocess.run(["sh", "-c", script, "sh", text], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


CASES = ["", "plain", "two\nlines", "a\n\nb", "\nleading", "trailing\n", "tab\there", 'quote"q', "back\\slash",
         "ctl\x01\x1fx", "ünïcode", "multi\nline\twith tab", "$(touch /tmp/x) `id` ;", "*", "a\n*\nb", "  spaced  \n x "]


@pytest.mark.parametrize("text", CASES)
def test_jstr_gives_awks_string_by_either_path(text):
    fast, slow = jstr(text), jstr(text, awk_only=True)
    assert json.loads(fast) == expected(text)
    assert fast == slow


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab *?[]$`'\"\\\n\t\x01é;")), max_size=30))
def test_jstr_matches_the_rule_for_any_text(text):
    assert json.loads(jstr(text)) == expected(text)


def test_existing_lists_only_what_is_there(tmp_path):
    (tmp_path / "a.network").write_text("")
    (tmp_path / "b.network").write_text("")
    (tmp_path / "gone.network").symlink_to(tmp_path / "nowhere")
    script = LIB + f'existing {tmp_path}/*.network {tmp_path}/*.yaml; printf "%s|" "$EXISTING"; existing {tmp_path}/*.yaml; printf "%s|" "$EXISTING"'
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    # a dangling link counts (it is arpfix's business); no trailing newline; nothing at all when none match
    assert done.stdout == "\n".join(f"{tmp_path}/{n}" for n in ("a.network", "b.network", "gone.network")) + "||"


def test_jfile_prints_base64_or_null(tmp_path):
    (tmp_path / "f").write_bytes(b"line 1\nline \x00 2\n" * 300)
    script = LIB + f'jfile {tmp_path}/f; printf "|"; jfile {tmp_path}/missing; printf "|"; jfile {tmp_path}'
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    content, missing, directory = done.stdout.split("|")
    assert base64.b64decode(json.loads(content)) == (tmp_path / "f").read_bytes()
    assert (missing, directory) == ("null", "null")
