"""ScreenAware: self-hosted backend for automatic time tracking and presence."""

__version__ = "0.1.0"
