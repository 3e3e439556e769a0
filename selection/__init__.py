"""Datasets as uint8 arrays and the training-subset selection criteria (no Ray here)."""
