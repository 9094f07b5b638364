"""ScreenAware desktop sensor: window snapshots, a local queue, uploads to the API."""

__version__ = "0.1.0"
