"""The baseline a user would write today: parse with the flowlogs-reader package (FlowRecord
per line, as its S3 reader does with a header) and aggregate per 5-tuple with its
aggregated_records; print the number of aggregates."""

from __future__ import annotations

import sys

from flowlogs_reader import FlowRecord, aggregated_records


def records(path: str):  # type: ignore[no-untyped-def]
    with open(path) as f:
        fields = f.readline().split()
        for line in f:
            yield FlowRecord(dict(zip(fields, line.split(), strict=False)))


if __name__ == "__main__":
    print(sum(1 for _ in aggregated_records(records(sys.argv[1]))))
