"""flowscope: what happened to these connections, from mirrored packets and flow logs."""

__version__ = "0.1.0"
