"""Flap detection: weighted percent state change over the last 21 results, start/stop thresholds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch.alerting.flap import (
    HISTORY,
    QUIET,
    FlapThresholds,
    judge,
    pad,
    percent_state_change,
    record,
)

histories = st.text(alphabet="01", max_size=40)


def test_quiet_and_alternating_histories() -> None:
    """Nothing changing is 0 %; a change at every one of the 20 places is 100 %."""
    assert percent_state_change(QUIET) == 0.0
    assert percent_state_change("1" * HISTORY) == 0.0
    assert percent_state_change("01" * 10 + "0") == pytest.approx(100.0)


def test_newest_change_weighs_more_than_oldest() -> None:
    """A change between the two newest results counts 1.2, between the two oldest 0.8 (of 20)."""
    newest = "0" * 20 + "1"
    oldest = "1" + "0" * 20
    assert percent_state_change(newest) == pytest.approx(100 * 1.2 / 20)
    assert percent_state_change(oldest) == pytest.approx(100 * 0.8 / 20)


def test_short_history_is_padded_as_quiet() -> None:
    """A new entity's first bad result counts as one change from a quiet past."""
    assert percent_state_change("1") == percent_state_change(QUIET[:-1] + "1")
    assert pad("1") == QUIET[:-1] + "1"
    assert record(QUIET, True) == QUIET[1:] + "1"


def test_toggling_starts_flapping_on_the_ninth_change() -> None:
    """From a quiet past, an entity toggling every check crosses 50 % on its ninth change (check)."""
    history = QUIET
    flapping = False
    for check in range(1, 30):
        history = record(history, check % 2 == 1)
        if judge(history, flapping, FlapThresholds()) == "started":
            assert check == 9  # nine changes: 1.2 + 1.179 + ... > 10 of 20
            return
    pytest.fail("never started flapping")


def test_start_and_stop_thresholds_have_a_gap() -> None:
    """Between stop and start nothing changes: not flapping stays so, flapping stays so."""
    t = FlapThresholds(start=50, stop=25)
    middle = QUIET[:13] + "01010101"  # 7 recent changes: about 40 %
    assert 25 < percent_state_change(middle) < 50
    assert judge(middle, False, t) is None
    assert judge(middle, True, t) is None
    assert judge("01" * 10 + "0", False, t) == "started"
    assert judge(QUIET, True, t) == "stopped"


@pytest.mark.parametrize(("start", "stop"), [(50, 50), (20, 30), (101, 10), (50, -1)])
def test_thresholds_must_be_ordered(start: float, stop: float) -> None:
    """stop must be below start, both within 0-100."""
    with pytest.raises(ValueError, match="flap thresholds"):
        FlapThresholds(start=start, stop=stop)


@given(histories)
def test_percent_is_bounded_and_symmetric(history: str) -> None:
    """0-100 %, and the same for a history and its mirror (true and false swapped) when full."""
    pct = percent_state_change(history)
    assert 0.0 <= pct <= 100.0 + 1e-9
    full = pad(history)
    mirrored = full.translate(str.maketrans("01", "10"))
    assert percent_state_change(mirrored) == pytest.approx(pct)


@given(histories, st.booleans())
def test_record_keeps_the_last_21(history: str, result: bool) -> None:
    """The history never grows past 21 results and always ends with the newest."""
    after = record(history, result)
    assert len(after) == HISTORY
    assert after[-1] == ("1" if result else "0")
