"""Dagster definitions of Hubspoke."""
