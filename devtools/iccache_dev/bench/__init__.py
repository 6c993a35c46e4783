"""Benchmarks of iccache (``iccache bench ...``)."""
