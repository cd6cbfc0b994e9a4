"""Compute and model voucher subsidy service."""

__version__ = "0.1.0"
