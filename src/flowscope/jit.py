"""Compiled kernels, run without importing Numba where an ahead-of-time build allows.

Every kernel is written for Numba (``@njit`` takes ``numba.njit``'s options).  But
importing Numba and loading even cached kernels costs ~0.4 s of every command, as much as
tracking the sessions of a million frames.  So ``python -m flowscope.jit`` (``make
setup`` runs it) compiles the kernels the packet path calls from Python ahead of time, with
``numba.pycc``, into the extension module ``flowscope._kernels``; next to it,
``_kernels.json`` holds the hash of flowscope's sources and, per kernel, the argument types
each compiled export takes.

At run time a kernel call runs its ahead-of-time export when the sources are unchanged and
the call's argument types are those of an export (checked per call: a compiled export
does not check the dtypes of the arrays it is given).  Anything else (another argument
type, a source edited since the build, no build, ``FLOWSCOPE_JIT=1``) goes to Numba's JIT
as before: Numba is imported then, and every kernel becomes its Numba dispatcher.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
MANIFEST = HERE / "_kernels.json"
_kernels: list[Kernel] = []
_numba: Any = None  # the numba module once the JIT is in use
_exports: dict[str, list[tuple[str, Callable[..., Any]]]] | None = None


def njit(*args: Any, **options: Any) -> Any:
    """``numba.njit``, deferred: ``@njit`` or ``@njit(cache=True, inline="always")``."""
    if args and callable(args[0]):
        return _kernel(args[0], options)
    return lambda func: _kernel(func, options)


def _kernel(func: Callable[..., Any], options: dict[str, Any]) -> Any:
    k = Kernel(func, options)
    _kernels.append(k)
    if _numba is not None:  # the JIT is in use already: the dispatcher itself
        k.dispatcher = _numba.njit(**options)(func)
        return k.dispatcher
    return k


def arg_key(args: tuple[Any, ...]) -> str:
    """The argument types as Numba's typeof tells them apart: arrays by dtype, dimensions,
    layout and writeability; scalars by type."""
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            layout = "C" if a.flags.c_contiguous else "F" if a.flags.f_contiguous else "A"
            parts.append(f"{a.dtype.descr!r}/{a.ndim}{layout}{a.flags.writeable:d}")
        elif isinstance(a, bool | np.bool_):
            parts.append("bool")
        elif isinstance(a, int):  # as Numba types Python ints
            parts.append("int64" if -(1 << 63) <= a < 1 << 63 else "uint64")
        elif isinstance(a, float):
            parts.append("float64")
        elif isinstance(a, np.generic):
            parts.append(a.dtype.name)
        else:
            parts.append(type(a).__name__)  # matches no export: the JIT
    return ";".join(parts)


def sources_hash() -> str:
    """Of every source file of the package (dtypes and constants shape the kernels too)."""
    h = hashlib.sha256()
    for path in sorted(HERE.rglob("*.py")):
        h.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _load_exports() -> dict[str, list[tuple[str, Callable[..., Any]]]]:
    if os.environ.get("FLOWSCOPE_JIT"):
        return {}
    try:
        manifest = json.loads(MANIFEST.read_text())
        if manifest["sources"] != sources_hash():
            return {}
        from flowscope import _kernels as module  # type: ignore[attr-defined]
    except (OSError, ValueError, KeyError, ImportError):
        return {}
    return {name: [(key, getattr(module, export)) for export, key in entries]
            for name, entries in manifest["kernels"].items()}


class Kernel:
    """A kernel before Numba is imported: calls its ahead-of-time export when the argument
    types match one, else hands over to Numba."""

    def __init__(self, func: Callable[..., Any], options: dict[str, Any]) -> None:
        self.py_func = func
        self.options = options
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.dispatcher: Any = None
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global _exports
        if self.dispatcher is None and not kwargs:
            if _exports is None:
                _exports = _load_exports()
            compiled = _exports.get(self.name)
            if compiled:
                key = arg_key(args)
                for want, export in compiled:
                    if want == key:
                        return export(*args)
        if self.dispatcher is None:
            use_numba()
        return self.dispatcher(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<kernel {self.name}>"


def use_numba() -> Any:
    """Import Numba and make every kernel its Numba dispatcher, in every flowscope module
    that holds it (kernels call each other through module globals, which Numba resolves
    when it compiles)."""
    global _numba
    if _numba is None:
        import numba

        for k in _kernels:
            k.dispatcher = numba.njit(**k.options)(k.py_func)
        _numba = numba
        for name, module in list(sys.modules.items()):
            if name.startswith("flowscope") and module is not None:
                for attr, value in list(vars(module).items()):
                    if isinstance(value, Kernel):
                        setattr(module, attr, value.dispatcher)
    return _numba
