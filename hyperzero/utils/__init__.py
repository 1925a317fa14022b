"""Plumbing shared by every stage: atomic files, run metadata, curves, devices, seeds."""
