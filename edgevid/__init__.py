"""edgevid: real-time human-action video classification on small devices."""

__version__ = "0.1.0"
