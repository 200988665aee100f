"""Producer stamps and the continuity checker: pure logic, no Redis."""

from __future__ import annotations

from massive_rt.enums import Market
from massive_rt.models import EquityTrade
from massive_rt.redis._continuity import Candidate, ContinuityChecker, missing_runs
from massive_rt.redis._wire import EntryEncoder, id_bulk, int_bulk, new_epoch, sequence_of
from massive_rt.redis.sink import persistence_of

S = "massive:stocks:T"


def feed(checker: ContinuityChecker, *entries: tuple[bytes, int]) -> list[Candidate]:
    """Observe ``(epoch, seq)`` entries with ids ``1-0, 2-0, …`` and received times ``100, 200, …``."""
    out = []
    for n, (epoch, seq) in enumerate(entries, 1):
        candidate = checker.observe(S, epoch, seq, b"%d-0" % n, n * 100)
        if candidate is not None:
            out.append(candidate)
    return out


def test_entries_in_order_are_continuous() -> None:
    checker = ContinuityChecker()
    assert feed(checker, *((b"e1", seq) for seq in range(1, 50))) == []
    assert checker.repeats == 0


def test_the_first_entry_of_an_epoch_is_the_baseline() -> None:
    checker = ContinuityChecker()  # a group that starts at "$" joins a producer mid-stream
    assert feed(checker, (b"e1", 7_000), (b"e1", 7_001)) == []


def test_a_duplicate_is_a_repeat_not_a_gap() -> None:
    checker = ContinuityChecker()
    assert feed(checker, (b"e1", 1), (b"e1", 2), (b"e1", 2), (b"e1", 1), (b"e1", 3)) == []
    assert checker.repeats == 2


def test_skipped_sequences_are_a_candidate_with_the_entries_around_the_hole() -> None:
    checker = ContinuityChecker()
    (candidate,) = feed(checker, (b"e1", 1), (b"e1", 2), (b"e1", 6), (b"e1", 7))
    assert candidate == Candidate(stream=S, epoch=b"e1", first=3, last=5, after_id=b"2-0", before_id=b"3-0",
                                  after_ns=200, before_ns=300)  # fmt: skip
    (gap,) = missing_runs(candidate, [])
    assert (gap.first, gap.last, gap.count, gap.after_ns, gap.before_ns) == (3, 5, 3, 200, 300)


def test_a_new_epoch_starts_its_own_sequence() -> None:
    checker = ContinuityChecker()  # the sink restarted: e2 begins at 1 while e1 stopped at 3
    assert feed(checker, (b"e1", 1), (b"e1", 2), (b"e1", 3), (b"e2", 1), (b"e2", 2)) == []
    (candidate,) = feed(checker, (b"e2", 4))
    assert (candidate.epoch, candidate.first, candidate.last) == (b"e2", 3, 3)


def test_interleaved_producers_are_checked_each_on_its_own() -> None:
    checker = ContinuityChecker()
    entries = [(b"a", 1), (b"b", 1), (b"a", 2), (b"a", 3), (b"b", 2), (b"b", 3), (b"a", 4), (b"b", 5), (b"a", 5)]
    (candidate,) = feed(checker, *entries)
    assert (candidate.epoch, candidate.first, candidate.last) == (b"b", 4, 4)


def test_a_sequence_restart_is_re_delivery_then_the_hole_after_it_counts() -> None:
    # A group re-created from 0 reads the surviving entries again (1..3), then new ones.
    checker = ContinuityChecker()
    assert feed(checker, (b"e1", 1), (b"e1", 2), (b"e1", 3), (b"e1", 1), (b"e1", 2), (b"e1", 3), (b"e1", 4)) == []
    assert checker.repeats == 3
    (candidate,) = feed(checker, (b"e1", 9))
    assert (candidate.first, candidate.last) == (5, 8)


def test_entries_that_still_exist_are_not_missing() -> None:
    candidate = Candidate(stream=S, epoch=b"e1", first=10, last=30, after_id=b"1-0", before_id=b"2-0", after_ns=1,
                          before_ns=2)  # fmt: skip
    # Another consumer of the group holds 10..14, 17 and 20..30; 15, 16, 18, 19 exist nowhere.
    present = [*range(10, 15), 17, *range(20, 31), 9, 31, 99]  # the entries around the hole are ignored
    assert [(g.first, g.last, g.count) for g in missing_runs(candidate, present)] == [(15, 16, 2), (18, 19, 2)]
    assert missing_runs(candidate, range(10, 31)) == []


def test_epochs_remembered_per_stream_are_bounded() -> None:
    checker = ContinuityChecker(max_epochs=2)
    assert feed(checker, (b"a", 1), (b"b", 1), (b"c", 1)) == []  # "a" is forgotten
    assert feed(checker, (b"a", 5)) == []  # seen afresh: a baseline, not a hole
    (candidate,) = feed(checker, (b"c", 3))
    assert (candidate.epoch, candidate.first) == (b"c", 2)


def test_entries_are_stamped_and_old_layouts_read_as_unstamped() -> None:
    epoch = new_epoch()
    assert epoch != new_epoch()
    encoder = EntryEncoder("massive:{market}:{ev}", None, epoch)
    trade = EquityTrade(event_type="T", symbol="AAPL", sequence_number=1, received_at_ns=123, connection="up")
    (entry,), skipped, failed = encoder.encode([trade], lambda _e: Market.STOCKS, lambda _e, _x: None)
    assert (skipped, failed) == (0, 0)
    entry.id, entry.seq = (1, 0), 42
    command = entry.head + id_bulk(entry.id) + entry.tail + int_bulk(entry.seq)
    parts = command.split(b"\r\n")
    assert parts[0] == b"*17"  # XADD stream id + 7 fields
    fields = parts[8:-1:2]  # the bulk strings after XADD, the stream and the id
    assert fields == [b"d", fields[1], b"ev", b"T", b"market", b"stocks", b"connection", b"up", b"received_at_ns",
                      b"123", b"epoch", epoch, b"seq", b"42"]  # fmt: skip
    assert sequence_of(fields) == (epoch, 42, 123)
    named = dict(zip(fields[::2], fields[1::2], strict=True))  # claimed entries come as dicts
    assert sequence_of(named) == (epoch, 42, 123)
    assert sequence_of(fields[:10]) is None  # the layout before producer stamps: not checked
    assert sequence_of({b"d": b"{}", b"epoch": b"e", b"seq": b"not a number"}) is None
    assert sequence_of({b"epoch": b"e", b"seq": b"3", b"received_at_ns": b"x"}) == (b"e", 3, 0)
    foreign = {bytes([65 + n]): b"" for n in range(14)}  # 14 fields by name, none of them ours
    assert sequence_of(foreign) is None


def test_persistence_names() -> None:
    assert persistence_of("no", "everysec", "") == "none"
    assert persistence_of("no", "everysec", "3600 1 300 100") == "rdb"
    assert persistence_of("yes", "always", "") == "aof-always"
    assert persistence_of("yes", "everysec", "3600 1") == "aof-everysec"
    assert persistence_of("yes", "no", "") == "aof-no"
