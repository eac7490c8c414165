"""``flowscope serve``: the analysis server that collectors stream to.

- :mod:`~flowscope.serve.store`: every accepted batch, durable, per collector (crash-safe log);
- :mod:`~flowscope.serve.analysis`: one session view over all collectors, the analysers of
  ``flowscope sessions``; :mod:`~flowscope.serve.coverage`: what sampling and slicing hide;
- :mod:`~flowscope.serve.sink`: the ``BatchSink`` the gRPC transport calls (store, then analyse;
  replay on start); Parquet snapshots;
- :mod:`~flowscope.serve.query` and :mod:`~flowscope.serve.http`: the JSON HTTP API;
- :mod:`~flowscope.serve.server`: the command wired (listeners, signals, clean stop).
"""

from flowscope.serve.analysis import Analysis
from flowscope.serve.sink import StoreSink
from flowscope.serve.store import BatchStore

__all__ = ["Analysis", "BatchStore", "StoreSink"]
