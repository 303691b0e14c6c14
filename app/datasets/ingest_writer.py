"""The ingest's Parquet writer, on a thread of its own with encodings chosen for the
data.

pyarrow releases the GIL while it encodes and compresses a row group, so the reader
parses the next segment meanwhile; a bounded queue keeps memory to a couple of
tables. Dictionary encoding is asked for text only (booleans are bit-packed anyway):
on float columns of measured data it found no repeats worth keeping and cost more
than the rest of the write (1.5 s against 0.9 s for 800k x 50 floats here, and a
larger file).
"""

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Tables waiting for the writer thread: the reader stays at most this far ahead.
QUEUED_TABLES = 2


def dictionary_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_string(f.type)]


class BackgroundWriter:
    def __init__(self, destination: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(
            destination, schema, use_dictionary=dictionary_columns(schema)
        )
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-writer")
        self._queued: deque[Future[None]] = deque()

    def write_table(self, table: pa.Table) -> None:
        # The oldest write's error, if any, surfaces here, in the reader's thread.
        while self._queued and (self._queued[0].done() or len(self._queued) >= QUEUED_TABLES):
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self._writer.write_table, table))

    def close(self) -> None:
        """Finish every queued write, then the file; raises the first write's error."""
        try:
            while self._queued:
                self._queued.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._writer.close()
