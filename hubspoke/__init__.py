"""Hubspoke: a federated hub-and-spoke customer lakehouse on Delta Lake."""

__version__ = "0.1.0"
