"""iccache data plane: the router service and the replay job."""

__version__ = "0.1.0"
