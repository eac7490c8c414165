"""Streaming from collectors to the analysis server over gRPC (proto/flowscope/v1/mirror.proto).

Collector side: ``Uplink(target, collector_id, spool_dir, ...)``, ``.send(batch, meta)``.
Server side: ``start_server(address, sink, ...)`` with a ``BatchSink`` (flowscope serve's store).
Everything travelling is a ``PacketBatch`` plus its ``BatchMeta``, acknowledged once stored.
"""

from flowscope.stream.meta import BatchMeta
from flowscope.stream.server import BatchSink, StreamServer, start_server
from flowscope.stream.uplink import Uplink, UplinkError

__all__ = ["BatchMeta", "BatchSink", "StreamServer", "Uplink", "UplinkError", "start_server"]
