"""StreetScan: city-management scene analytics for street cameras."""

__version__ = "0.1.0"
