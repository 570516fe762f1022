"""Event producers: a synthetic bank with fraud, CSV replay and the UCI credit card replay.

The generators here are pure (no Kafka); ``app.produce.sender`` sends any of them and
``app.produce.cli`` is the ``fedstream produce`` command group. Neither is imported here,
so importing the generators does not import confluent-kafka.
"""

from app.produce.csv_replay import CsvReplay, CsvReplayError, stable_silo
from app.produce.synthetic import Event, InvalidEvent, SyntheticBank, invalid_events, with_invalid
from app.produce.uci import (
    UCI_PROFILE_ATTRS,
    UCI_TXN_ATTRS,
    UciReplay,
    expected_rows,
    find_uci_csv,
    uci_csv_path,
)

__all__ = [
    "UCI_PROFILE_ATTRS",
    "UCI_TXN_ATTRS",
    "CsvReplay",
    "CsvReplayError",
    "Event",
    "InvalidEvent",
    "SyntheticBank",
    "UciReplay",
    "expected_rows",
    "find_uci_csv",
    "invalid_events",
    "stable_silo",
    "uci_csv_path",
    "with_invalid",
]
