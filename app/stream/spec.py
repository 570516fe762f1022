"""The feature spec of a deployment, built from its settings in one place."""

from __future__ import annotations

from app.features.spec import FeatureSpec
from app.features.windows import WindowConfig
from app.settings import Settings

__all__ = ["feature_spec"]


def feature_spec(settings: Settings, uci: bool = False) -> FeatureSpec:
    """Windows and attribute columns from ``settings``; ``uci`` selects the UCI replay's attrs."""
    txn_attrs, profile_attrs = settings.txn_attr_names, settings.profile_attr_names
    if uci:
        from app.produce.uci import UCI_PROFILE_ATTRS, UCI_TXN_ATTRS

        txn_attrs, profile_attrs = UCI_TXN_ATTRS, UCI_PROFILE_ATTRS
    return FeatureSpec(
        windows=WindowConfig(settings.short_window_s, settings.long_window_s, settings.hop_s),
        txn_attrs=txn_attrs,
        profile_attrs=profile_attrs,
    )
