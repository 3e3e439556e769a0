"""Experiment definitions (E1, E2), analysis of results, plots. Never trains models."""
