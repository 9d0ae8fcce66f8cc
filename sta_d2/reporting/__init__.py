"""Offline reports over finished runs: results tables, loss curves, gradient-angle plots."""
