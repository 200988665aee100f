"""The status fields a relay forwards as extra keys of a server status, and their parser (pure logic):
exact keys, exact values, and every value of the wrong type refused by name."""

from __future__ import annotations

from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.protocol import status_fields, status_from_fields

MARK = mrt.SymbolMark(symbol="AAPL", ev="T", timestamp=1_700, sequence=42, received_at_ns=99)


def test_a_bare_status_carries_only_its_three_keys() -> None:
    assert status_fields("gap", "text", mrt.StatusMessage(status="x")) == {"ev": "status", "status": "gap",
                                                                          "message": "text"}  # fmt: skip


def test_every_number_and_the_marks_become_keys() -> None:
    event = mrt.StatusMessage(status="gap", gap_start_ns=0, gap_end_ns=7, dropped=3, channels=("T.A", "Q.A"),
                              last_seen=(MARK,), last_seen_omitted=2, last_seen_omitted_oldest=1_600)  # fmt: skip
    assert status_fields("gap", "m", event) == {
        "ev": "status", "status": "gap", "message": "m", "gap_start_ns": 0, "gap_end_ns": 7, "dropped": 3,
        "channels": ["T.A", "Q.A"], "last_seen": [{"sym": "AAPL", "ev": "T", "t": 1_700, "q": 42, "r": 99}],
        "last_seen_omitted": 2, "last_seen_omitted_oldest": 1_600,
    }  # fmt: skip


def test_omitted_marks_alone_are_forwarded_too() -> None:
    event = mrt.StatusMessage(status="gap", last_seen_omitted=5, last_seen_omitted_oldest=None)
    fields = status_fields("gap", "m", event)
    assert (fields["last_seen"], fields["last_seen_omitted"], fields["last_seen_omitted_oldest"]) == ([], 5, None)


def test_the_fields_come_back_as_they_went() -> None:
    event = mrt.StatusMessage(status="gap", gap_start_ns=1, gap_end_ns=7, dropped=3, channels=("T.A",),
                              last_seen=(MARK,), last_seen_omitted=2, last_seen_omitted_oldest=1.5)  # fmt: skip
    fields, rejected = status_from_fields(status_fields("gap", "m", event))
    assert rejected == []
    assert fields == {"gap_start_ns": 1, "gap_end_ns": 7, "dropped": 3, "channels": ("T.A",), "last_seen": (MARK,),
                      "last_seen_omitted": 2, "last_seen_omitted_oldest": 1.5}  # fmt: skip


def test_an_object_without_extra_keys_has_no_fields() -> None:
    assert status_from_fields({"ev": "status", "status": "gap", "message": "m"}) == ({}, [])


@pytest.mark.parametrize("key", ["gap_start_ns", "gap_end_ns", "dropped", "last_seen_omitted"])
@pytest.mark.parametrize("value", [-1, "1", 1.0, True, None, [1]])
def test_counts_and_times_must_be_non_negative_ints(key: str, value: object) -> None:
    assert status_from_fields({key: value}) == ({}, [key])


@pytest.mark.parametrize("key", ["gap_start_ns", "gap_end_ns", "dropped", "last_seen_omitted"])
def test_zero_is_a_valid_count_or_time(key: str) -> None:
    assert status_from_fields({key: 0}) == ({key: 0}, [])


@pytest.mark.parametrize(("value", "ok"), [(None, True), (3, True), (2.5, True), ("3", False), (True, False),
                                           ([], False)])  # fmt: skip
def test_the_oldest_omitted_timestamp_is_a_number_or_none(value: object, ok: bool) -> None:
    fields, rejected = status_from_fields({"last_seen_omitted_oldest": value})
    assert (fields, rejected) == (({"last_seen_omitted_oldest": value}, []) if ok
                                  else ({}, ["last_seen_omitted_oldest"]))  # fmt: skip


@pytest.mark.parametrize("value", ["T.A", ["T.A", 3], [None], {"T.A": 1}, ("T.A",)])
def test_channels_must_be_a_list_of_strings(value: object) -> None:
    assert status_from_fields({"channels": value}) == ({}, ["channels"])


def test_an_empty_channel_list_is_valid() -> None:
    assert status_from_fields({"channels": []}) == ({"channels": ()}, [])


def test_a_mark_without_optional_keys_reads_none_and_zero() -> None:
    fields, rejected = status_from_fields({"last_seen": [{"sym": "A", "ev": "Q"}]})
    assert rejected == []
    assert fields == {"last_seen": (mrt.SymbolMark(symbol="A", ev="Q", timestamp=None, sequence=None,
                                                   received_at_ns=0),)}  # fmt: skip


@pytest.mark.parametrize(
    "marks",
    [
        {"sym": "A", "ev": "T"},  # not a list
        ({"sym": "A", "ev": "T"},),  # a tuple is not JSON's list
        ["A"],  # an item that is not an object
        [{"sym": "A"}],  # no ev
        [{"sym": "A", "ev": 1}],  # ev not a string
        [{"ev": "T"}],  # no symbol
        [{"sym": ["A"], "ev": "T"}],  # symbol not a string
        [{"sym": "A", "ev": "T", "r": -1}],  # a negative receive time
        [{"sym": "A", "ev": "T", "r": "1"}],  # a receive time that is not an int
        [{"sym": "A", "ev": "T"}, {"sym": "B"}],  # one bad mark spoils the list
    ],
)
def test_malformed_marks_are_refused_whole(marks: Any) -> None:
    assert status_from_fields({"last_seen": marks}) == ({}, ["last_seen"])


def test_every_refused_key_is_named_and_the_good_ones_kept() -> None:
    fields, rejected = status_from_fields({
        "gap_start_ns": "1", "gap_end_ns": 5, "dropped": -1, "channels": ["T.A", 3], "last_seen": "x",
        "last_seen_omitted": True, "last_seen_omitted_oldest": "x",
    })  # fmt: skip
    assert fields == {"gap_end_ns": 5}
    assert rejected == ["gap_start_ns", "dropped", "last_seen_omitted", "last_seen_omitted_oldest", "channels",
                        "last_seen"]  # fmt: skip
