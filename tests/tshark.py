"""tshark as an independent decoder: field extraction for the differential tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed "
                                  "(make test installs it when run as root)")

# Wireshark decodes VXLAN on 4789 only by default; flowscope also on Linux's 8472.
DECODE_AS = ["-d", "udp.port==8472,vxlan"]


def fields(path: str, names: list[str],
           extra: list[str] | None = None) -> list[dict[str, list[str]]]:
    """One dict per frame: field name -> every occurrence, outermost first."""
    cmd = [TSHARK or "tshark", "-n", "-r", path, *DECODE_AS, *(extra or []), "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for n in names:
        cmd += ["-e", n]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        parts += [""] * (len(names) - len(parts))
        rows.append({n: (p.split("|") if p else []) for n, p in zip(names, parts, strict=True)})
    return rows
