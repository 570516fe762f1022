"""Parsing ``fl up --silo-kafka SILO=FILE`` (app.fl.sites)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.fl.sites import SiteError, parse_site_kafka


def test_site_kafka_options_name_a_silo_and_a_file() -> None:
    assert parse_site_kafka(["1=/site/silo-1.conf", " 2 = ~/s2.conf"]) == {
        1: Path("/site/silo-1.conf"), 2: Path("~/s2.conf").expanduser()
    }  # fmt: skip
    assert parse_site_kafka(None) == {}
    for bad in ("1", "x=/f", "1=", "=/f"):
        with pytest.raises(SiteError, match="SILO=FILE"):
            parse_site_kafka([bad])
