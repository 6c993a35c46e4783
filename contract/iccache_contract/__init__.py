"""The contract between the iccache operator and its data plane: the router's typed
settings (the file the operator renders and the router reads) and the names both sides
share. pydantic only; neither side's code is imported here."""

__version__ = "0.1.0"
