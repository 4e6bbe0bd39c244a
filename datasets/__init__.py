"""Data sets of CAC: one trial's data (trial.py: OpenSetData) and what it is made of, a concern per
module (docs/architecture.md). This package file imports nothing: import from each module."""
