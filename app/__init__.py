"""fedstream: federated learning on streaming bank data."""

__version__ = "0.1.0"
