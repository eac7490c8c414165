"""Errors that reach the user: each says what is wrong and what to do next."""

from __future__ import annotations


class FlowscopeError(Exception):
    """A problem the user can act on; the CLI prints it without a traceback."""

    exit_code = 1


class CaptureFormatError(FlowscopeError):
    """The input is not a capture file flowscope can read."""

    exit_code = 2
