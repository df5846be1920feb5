"""Shared test helpers: builders for tiny models and real servers."""
