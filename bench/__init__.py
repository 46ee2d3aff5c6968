"""Benchmarks: ``python -m bench`` from the repo root (see bench/run.py and docs/catalog.md)."""
