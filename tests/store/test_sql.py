"""store.sql.in_list: few distinct IN-list lengths, same matches."""

from __future__ import annotations

from store.sql import in_list


def test_pads_to_a_bucket_with_the_last_value() -> None:
    assert in_list([]) == []
    assert in_list([5]) == [5]
    assert in_list([1, 2, 3]) == [1, 2, 3, 3]
    assert in_list(range(1, 18)) == list(range(1, 18)) + [17] * 15
    assert len(in_list(range(1500))) == 2048


def test_repeats_are_dropped_first_and_every_value_kept() -> None:
    out = in_list([3, 1, 3, 2, 1])
    assert out == [3, 1, 2, 2]
    assert set(out) == {1, 2, 3}


def test_lengths_from_1_to_1024_need_only_eleven_texts() -> None:
    assert len({len(in_list(range(n))) for n in range(1, 1025)}) == 11
