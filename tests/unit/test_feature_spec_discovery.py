"""Choosing the feature spec from what the stream published (features.spec)."""

from __future__ import annotations

import logging

import pytest

from app.features.spec import FeatureSpec, describe_spec, spec_mismatch
from app.fl.spec_source import choose_spec

DEFAULT = FeatureSpec()
UCI = FeatureSpec(txn_attrs=("pay_status", "bill_amt", "pay_amt"), profile_attrs=("sex",))


def _doc(spec: FeatureSpec, t: float) -> dict[str, object]:
    return {**spec.document(), "time": t}


def test_nothing_given_takes_the_newest_published_spec() -> None:
    published = [_doc(DEFAULT, 1.0), _doc(UCI, 2.0)]
    assert choose_spec("", 0, published) == (UCI.version, UCI.n_features)


def test_nothing_published_falls_back_to_the_default_spec() -> None:
    assert choose_spec("", 0, []) == (DEFAULT.version, DEFAULT.n_features)


def test_a_given_version_picks_its_width_from_the_published_specs() -> None:
    published = [_doc(DEFAULT, 1.0), _doc(UCI, 2.0)]
    assert choose_spec(DEFAULT.version, 0, published) == (DEFAULT.version, DEFAULT.n_features)


def test_a_spec_nobody_published_is_kept_with_a_one_line_warning_naming_both(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Execute
    with caplog.at_level(logging.WARNING):
        got = choose_spec("bench-x", 8, [_doc(UCI, 2.0)])

    # Assert
    assert got == ("bench-x", 8)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line
    assert "bench-x (8 features)" in line
    assert f"{UCI.version} ({UCI.n_features} features, pipeline fraud)" in line


def test_mismatch_text_and_description() -> None:
    assert spec_mismatch({"version": DEFAULT.version}, [_doc(DEFAULT, 1.0)]) is None
    assert spec_mismatch({"version": "x"}, []) is None
    assert describe_spec({"version": "abc", "n_features": 3}) == "abc (3 features)"
