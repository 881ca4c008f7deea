"""The one quoting helper per shell keeps any value a literal (checked by a real sh)."""

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpfix.quoting import UnquotableValue, ps_quote, sh_quote

HOSTILE = ["it's", "$(touch /tmp/pwn)", "`id`", "a;b", "a\nb", "\\", '"', "'\"'\"", "é ü 中", "x" * 5000, "-n", ""]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))))
def test_sh_quote_round_trips_through_a_real_shell(value):
    out = subprocess.run(["sh", "-c", f"printf '%s' {sh_quote(value)}"], capture_output=True).stdout
    assert out.decode("utf-8", "surrogateescape") == value


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_literal_in_sh(value, tmp_path):
    marker = tmp_path / "pwned"
    value = value.replace("/tmp/pwn", str(marker))
    out = subprocess.run(["sh", "-c", f"printf '%s' {sh_quote(value)}"], capture_output=True).stdout.decode()
    assert out == value and not marker.exists()


def test_nul_cannot_be_quoted():
    with pytest.raises(UnquotableValue):
        sh_quote("a\x00b")
    with pytest.raises(UnquotableValue):
        ps_quote("a\x00b")


def test_ps_quote_doubles_every_single_quote_kind():
    assert ps_quote("it's") == "'it''s'"
    assert ps_quote("a\u2019b") == "'a\u2019\u2019b'"
    assert ps_quote("$(Get-Date)`n") == "'$(Get-Date)`n'"
