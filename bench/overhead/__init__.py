"""Overhead benchmark of the sidecar against a bare proxy: `python -m bench.overhead`."""
