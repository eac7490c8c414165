"""``flowscope flowlogs analyze s3://bucket/prefix`` and ``analyze fl-...``: the records are
downloaded (every object under the prefix; a flow log's whole delivery) into a temporary
folder, removed at exit, which the local readers then walk.  DuckDB's httpfs extension would
read S3 in place but cannot be installed offline; the download is streamed and shown.

AWS options come from the environment (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``),
as ``analyze`` has no AWS flags; ``flowscope aws flowlogs fetch`` keeps a folder to reuse.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

from flowscope.aws.fetch import FLOW_LOG_ID, fetch


def is_remote(path: str) -> bool:
    return path.startswith("s3://") or bool(FLOW_LOG_ID.match(path))


def materialize(path: str) -> str:
    """A local folder holding the records of ``path`` (s3://... or fl-...)."""
    from flowscope.aws.session import Aws

    folder = Path(tempfile.mkdtemp(prefix="flowscope-aws-"))
    atexit.register(shutil.rmtree, folder, True)
    progress = _progress()
    try:
        result = fetch(Aws(), path, None, None, folder, progress)
    finally:
        stop = getattr(progress, "stop", None)
        if stop:
            stop()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    what = f"{result.files} objects, {result.bytes:,} bytes" if result.source.kind == "s3" \
        else f"{result.streams} streams, {result.events:,} records"
    print(f"read {path}: {what}", file=sys.stderr)
    return str(folder)


def _progress():  # type: ignore[no-untyped-def]
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    from flowscope.aws.progress import RichProgress

    return RichProgress(console)
