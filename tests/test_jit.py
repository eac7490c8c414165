"""Ahead-of-time kernels (flowscope.jit): an export runs only for the argument types Numba
would have compiled it for, a stale or missing build falls back to Numba, and the sessions
an export computes are the JIT's, exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowscope import jit
from flowscope.decode.columns import DECODED
from flowscope.jit_build import type_key

RECORD = np.dtype([("a", "<i8"), ("b", "u1", (3,)), ("c", "<i4")])
DTYPES = [np.uint8, np.int32, np.int64, np.uint64, np.float64, np.bool_, RECORD, DECODED]


def _array(dtype: np.dtype, shape: tuple[int, ...], order: str, step: int, writeable: bool
           ) -> np.ndarray:
    a = np.zeros(shape, dtype, order=order)  # type: ignore[call-overload]
    if step > 1:
        a = a[::step]
    a.flags.writeable = writeable
    return a


arrays = st.builds(_array, st.sampled_from(DTYPES),
                   st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
                   st.sampled_from("CF"), st.integers(1, 2), st.booleans())
scalars = st.one_of(st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1), st.floats(),
                    st.sampled_from([np.int64(3), np.uint8(7), np.int32(-1), np.float64(0.5),
                                     np.bool_(True)]))


@given(st.lists(st.one_of(arrays, scalars), min_size=1, max_size=5))
def test_arg_key_is_numbas_type(args: list) -> None:  # type: ignore[type-arg]
    """The run-time key of a call equals the key of the Numba types it would dispatch on."""
    keys = [type_key(numba.typeof(a)) for a in args]
    assert jit.arg_key(tuple(args)) == ";".join(k for k in keys if k is not None)
    assert None not in keys


def test_different_record_layouts_differ() -> None:
    a, b = np.zeros(2, RECORD), np.zeros(2, np.dtype([("a", "<i8"), ("c", "<i4")]))
    assert jit.arg_key((a,)) != jit.arg_key((b,))
    assert jit.arg_key((a,)) != jit.arg_key((a[::-1],))  # layout A, not C


def test_stale_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "_kernels.json"
    manifest.write_text(json.dumps({"sources": "0" * 64, "kernels": {"x.y": [["k0", "int64"]]}}))
    monkeypatch.setattr(jit, "MANIFEST", manifest)
    monkeypatch.delenv("FLOWSCOPE_JIT", raising=False)
    assert jit._load_exports() == {}
    monkeypatch.setattr(jit, "MANIFEST", tmp_path / "missing.json")
    assert jit._load_exports() == {}


def _built() -> bool:
    try:
        return json.loads(jit.MANIFEST.read_text())["sources"] == jit.sources_hash()
    except (OSError, ValueError, KeyError):
        return False


@pytest.mark.skipif(not _built(), reason="ahead-of-time kernels not built for these sources "
                                          "(make setup builds them)")
def test_aot_sessions_equal_jit(tmp_path: Path) -> None:
    """One capture through both: the exports (no Numba imported) and Numba's JIT."""
    capture = tmp_path / "incident.pcap"
    subprocess.run([sys.executable, "demo/make_incident.py", "-o", str(capture)], check=True,
                   capture_output=True)
    probe = ("import sys; sys.argv = ['flowscope'] + sys.argv[1:]; "
             "from flowscope.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('numba' in sys.modules, file=sys.stderr)")
    outputs = {}
    for mode, env in (("aot", {}), ("jit", {"FLOWSCOPE_JIT": "1"})):
        out = tmp_path / f"{mode}.parquet"
        done = subprocess.run([sys.executable, "-c", probe, "sessions", str(capture), "-f",
                               "parquet", "-o", str(out)], capture_output=True, text=True,
                              env={**os.environ, **env}, check=True)
        assert done.stderr.strip().splitlines()[-1] == ("True" if mode == "jit" else "False")
        outputs[mode] = pq.read_table(out)
    assert outputs["aot"].num_rows == 43
    assert outputs["aot"].equals(outputs["jit"])
