"""arpfix's own table renderer prints what tabulate's "simple" format prints, byte for byte, and hands
every table it does not cover (multi-line, wide or odd characters, numbers, -v wrapping) to tabulate."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tabulate import tabulate

from arpfix.report import paint, simple_table, table

PLAIN = st.lists(st.sampled_from(list("ab -_./:=,()")), max_size=12).map("".join)
ODD = st.lists(st.sampled_from(list("ab -") + ["ü", "\t", "\x1b[1m", "\x1b", "✓"]), min_size=1, max_size=6).map("".join)
# mostly what arpfix prints (ASCII, painted or not), now and then a cell only tabulate renders
CELL = st.one_of(PLAIN, PLAIN, PLAIN, PLAIN.map(lambda t: paint(t, "ok", True)), PLAIN.map(lambda t: paint(t, "error", True)),
                 st.sampled_from(["", " ", "  lead", "trail  ", "-", "DRIFT"]), st.sampled_from(["", " ", "-", "ok"]),
                 PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, ODD)


def tabulated(rows, headers):
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.text(alphabet="abcdefgh ", min_size=1, max_size=9).map(str.strip).filter(bool), min_size=n, max_size=n),
    st.lists(st.lists(CELL, min_size=n, max_size=n), max_size=8))))
def test_every_table_reads_as_tabulate_prints_it(case):
    headers, rows = case
    ours = simple_table(rows, headers)
    if ours is not None:
        assert ours == tabulated(rows, headers)
    assert table(rows, headers) == tabulated(rows, headers)


def test_the_tables_arpfix_prints_take_the_fast_path():
    rows = [["rs1", paint("drift", "drift", True), "net.ipv4.conf.all.arp_ignore", "1", "0", "DRIFT", "runtime"],
            ["rs10", "compliant", "VIP 10.0.0.250 on lo", "present", "present", "ok", ""]]
    headers = ["host", "status", "check", "expected", "actual", "result", "detail"]
    assert simple_table(rows, headers) == tabulated(rows, headers)
    assert simple_table(rows, headers).splitlines()[2].startswith("rs1   ")


def test_what_it_does_not_cover_goes_to_tabulate():
    headers = ["a", "b"]
    for rows in ([["x\ny", "z"]], [["ü", "z"]], [[1, "z"]], [[None, "z"]], [["x"]], []):
        assert simple_table(rows, headers) is None
        assert table(rows, headers) == tabulated(rows, headers)
