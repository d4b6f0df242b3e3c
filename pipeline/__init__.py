"""Thin stage scripts: read params.yaml, call weaksam with explicit arguments, write atomically."""
