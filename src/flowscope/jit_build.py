"""Build the ahead-of-time kernels (:mod:`flowscope.jit`): ``python -m flowscope.jit_build
CAPTURE...`` (``make setup`` runs it on the demo capture).

Runs the packet path (``sessions`` on each capture, ``decap`` to pcapng and ``sessions`` on
that) under Numba's JIT, then compiles every kernel signature those runs used with
``numba.pycc`` into ``flowscope/_kernels*.so``, and writes ``_kernels.json``: the sources'
hash and, per kernel, its exports and the argument types each takes.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from flowscope import jit


def type_key(ty: Any) -> str | None:
    """:func:`jit.arg_key` of one argument, from its Numba type (None: not exportable)."""
    from numba.core import types
    from numba.np.numpy_support import as_dtype

    if isinstance(ty, types.Array):
        return f"{as_dtype(ty.dtype).descr!r}/{ty.ndim}{ty.layout}{ty.mutable:d}"
    if isinstance(ty, types.Boolean):
        return "bool"
    if isinstance(ty, types.Integer | types.Float):
        return str(ty)
    return None


def workload(captures: list[str]) -> None:
    from flowscope.cli import _config
    from flowscope.pipeline import PacketRun, track_sessions
    from flowscope.sinks.files import write_table
    from flowscope.sinks.pcapng import PcapngWriter

    config = _config(None, None, 4)
    with tempfile.TemporaryDirectory() as tmp:
        for i, capture in enumerate(captures):
            out = f"{tmp}/{i}.pcapng"
            table = track_sessions(PacketRun([capture], config, reuse_rows=True)).table
            write_table(table, "parquet", f"{tmp}/{i}.parquet")
            run = PacketRun([capture], config, reuse_rows=True)
            with open(out, "wb") as f:  # as `flowscope decap` does
                writer = PcapngWriter(f, "session", False)
                for batch, rows in run.batches():
                    writer.write(batch, rows, run.mirrors)
            track_sessions(PacketRun([out], config, reuse_rows=True))
        flow_logs(tmp)


# A flow log the combiner reads (flowscope.flowlogs.combine): records it sums, lines it leaves.
FLOW_LOG = """version interface-id srcaddr dstaddr srcport dstport protocol packets bytes \
start end action log-status tcp-flags pkt-srcaddr pkt-dstaddr
5 eni-1 10.0.0.9 10.0.0.10 40000 443 6 3 180 1763000040 1763000099 ACCEPT OK 2 - -
5 eni-1 10.0.0.10 10.0.0.9 443 40000 6 3 180 1763000040 1763000099 ACCEPT OK 18 - -
5 eni-1 10.0.0.9 10.0.0.11 40001 443 6 1 60 1763000040 1763000099 REJECT OK 2 - -
5 eni-1 2001:db8::1 2001:db8::2 40002 443 6 1 60 1763000040 1763000099 ACCEPT OK 2 - -
"""


def flow_logs(tmp: str) -> None:
    from flowscope.flowlogs import combine

    path = f"{tmp}/flows.log"
    Path(path).write_text(FLOW_LOG)
    names = tuple(FLOW_LOG.split("\n", 1)[0].split())
    combine.combine(path, names, True, tmp)
    import pyarrow as pa

    from flowscope.flowlogs import order

    texts = pa.array(["b", "a", None, "a"] * 2, pa.string())  # gathered through a dictionary
    nulls = pa.nulls(8, pa.string())  # (no text buffer at all)
    order.ordered(pa.table({"text": texts, "nulls": nulls}), [("text", False)])


def main(argv: list[str]) -> None:
    numba = jit.use_numba()
    workload(argv)
    warnings.simplefilter("ignore", numba.NumbaPendingDeprecationWarning)
    from numba.pycc import CC

    cc = CC("_kernels")
    cc.output_dir = str(jit.HERE)
    cc.target_cpu = "host"
    kernels: dict[str, list[list[str]]] = {}
    n = 0
    for k in jit._kernels:
        for sig in k.dispatcher.signatures:
            keys = [type_key(t) for t in sig]
            if any(key is None for key in keys):
                continue
            export = f"k{n}"
            n += 1
            cc.export(export, sig)(k.py_func)
            kernels.setdefault(k.name, []).append([export, ";".join(keys)])  # type: ignore[arg-type]
    t0 = time.perf_counter()
    cc.compile()
    jit.MANIFEST.write_text(json.dumps({"sources": jit.sources_hash(), "kernels": kernels},
                                       indent=1))
    print(f"flowscope.jit_build: {n} kernel exports compiled in {time.perf_counter() - t0:.0f} s "
          f"into {jit.HERE}/_kernels", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:] or [str(Path("build/demo/incident.pcap"))])
