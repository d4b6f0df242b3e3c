"""Dry runs of the paper profiles on generated data in the real formats."""
