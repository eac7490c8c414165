"""Syntax errors in filters and UDF rules, pointing at the offending text."""

from __future__ import annotations

from flowscope.errors import FlowscopeError


class FilterSyntaxError(FlowscopeError):
    """A filter expression or a UDF rule that does not parse.

    The message names the problem, the 1-based column, and repeats the text with a caret
    under the offending token, so it reads the same whatever the CLI prints before it::

        filter: 'tcp' cannot qualify 'host' (use 'ip', 'ip6' or none) at column 10
          tcp host 10.0.0.1
                   ^~~~~~~~
    """

    def __init__(self, kind: str, problem: str, text: str, column: int, width: int = 1) -> None:
        self.kind = kind  # "filter" or "udf"
        self.problem = problem
        self.text = text
        self.column = column  # 1-based; len(text) + 1 = at the end
        self.width = max(1, width)
        shown = "".join(ch if ch.isprintable() else "?" for ch in text)
        caret = " " * (column - 1) + "^" + "~" * (self.width - 1)
        super().__init__(f"{kind}: {problem} at column {column}\n  {shown}\n  {caret}")
