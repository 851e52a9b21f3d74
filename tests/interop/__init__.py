"""Interoperability tests against independent Diameter implementations."""
