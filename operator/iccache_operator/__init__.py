"""iccache operator: reconciles InContextCache resources into the serving stack.

This package must import without the data plane's heavy dependencies (torch, redis,
grpc); a unit test enforces it.
"""

__version__ = "0.1.0"
