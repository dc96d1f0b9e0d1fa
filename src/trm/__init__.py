"""trm: tiny recursive reasoning models (TRM, HRM and a transformer baseline)."""

__version__ = "0.1.0"
