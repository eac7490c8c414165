"""A strict reader of Zeek ASCII logs (the format of Zeek's ``logging/writers/ascii``).

Every header line must be present and well formed, ``#fields`` and ``#types`` must agree,
every data line must have one value per field, and every value must parse as its declared
type (time/interval with 6 decimals, count, port 0-65535, addr, bool T/F, set/vector).
Raises ``ValueError`` at the first departure; returns rows as dicts of typed values.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

HEADER = ("#separator", "#set_separator", "#empty_field", "#unset_field", "#path", "#open",
          "#fields", "#types")
DECIMAL6 = re.compile(r"-?\d+\.\d{6}")


BTEST_TIME = "XXXXXXXXXX.XXXXXX"  # btest canonifies timestamps in Zeek's baselines


def _value(text: str, typ: str, unset: str, empty: str, set_sep: str, btest: bool) -> Any:
    if text == unset or (btest and typ == "time" and text == BTEST_TIME):
        return None
    if typ in ("time", "interval"):
        if not DECIMAL6.fullmatch(text):
            raise ValueError(f"{typ} {text!r} is not a 6-decimal number")
        return float(text)
    if typ in ("count", "int"):
        if not re.fullmatch(r"-?\d+" if typ == "int" else r"\d+", text):
            raise ValueError(f"{typ} {text!r}")
        return int(text)
    if typ == "port":
        port = int(text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {text!r}")
        return port
    if typ == "addr":
        return str(ipaddress.ip_address(text))
    if typ == "bool":
        if text not in ("T", "F"):
            raise ValueError(f"bool {text!r}")
        return text == "T"
    if typ.startswith(("set[", "vector[")):
        return [] if text == empty else text.split(set_sep)
    if typ in ("string", "enum"):
        return text
    raise ValueError(f"unknown type {typ!r}")


def read_log(text: str, btest: bool = False) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Parse a log; ``btest=True`` accepts the masks of Zeek's test baselines."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("### ")]  # btest banner
    meta: dict[str, str] = {}
    if not lines or lines[0] != "#separator \\x09":
        raise ValueError("first line must be '#separator \\x09'")
    head = [ln for ln in lines if ln.startswith("#")]
    for name in HEADER[1:]:
        found = [ln for ln in head if ln.split("\t", 1)[0].split(" ", 1)[0] == name]
        if len(found) != 1:
            raise ValueError(f"header {name} missing or repeated")
        line = found[0]
        meta[name[1:]] = line.split("\t", 1)[1] if "\t" in line else line.split(" ", 1)[1]
    fields = meta["fields"].split("\t")
    types = meta["types"].split("\t")
    if len(fields) != len(types):
        raise ValueError("#fields and #types differ in length")
    rows = []
    for n, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != len(fields):
            raise ValueError(f"line {n}: {len(cells)} values for {len(fields)} fields")
        rows.append({f: _value(c, t, meta["unset_field"], meta["empty_field"],
                               meta["set_separator"], btest)
                     for f, c, t in zip(fields, cells, types, strict=True)})
    return meta, rows
