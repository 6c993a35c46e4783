"""iccache developer tooling: local services, the local control plane, the benchmark,
the demo and ``iccache check``. Never installed in an image."""

__version__ = "0.1.0"
