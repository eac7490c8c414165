"""The bare DuckDB query: read the text log, pair the two directions of each 5-tuple and OR
their flags.  No verdicts, no evidence, no NAT handling: the floor for any SQL engine."""

from __future__ import annotations

import sys

import duckdb

QUERY = """
WITH r AS (
  SELECT * FROM read_csv(?, delim=' ', header=true, nullstr='-', auto_detect=true)
), k AS (
  SELECT least(srcaddr, dstaddr) AS a, greatest(srcaddr, dstaddr) AS b,
         CASE WHEN srcaddr <= dstaddr THEN srcport ELSE dstport END AS ap,
         CASE WHEN srcaddr <= dstaddr THEN dstport ELSE srcport END AS bp,
         protocol, srcaddr <= dstaddr AS from_a, "tcp-flags" AS flags, packets, bytes
  FROM r
)
SELECT a, ap, b, bp, protocol,
       bit_or(flags) FILTER (WHERE from_a) AS flags_a,
       bit_or(flags) FILTER (WHERE NOT from_a) AS flags_b,
       sum(packets) AS packets, sum(bytes) AS bytes
FROM k GROUP BY ALL
"""

if __name__ == "__main__":
    con = duckdb.connect()
    con.execute("SET threads = 1")
    print(con.execute(f"SELECT count(*) FROM ({QUERY})", [sys.argv[1]]).fetchone()[0])
