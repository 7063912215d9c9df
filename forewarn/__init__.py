"""forewarn: an observability pipeline that sees incidents coming."""

__version__ = "0.1.0"
