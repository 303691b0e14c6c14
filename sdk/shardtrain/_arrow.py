"""Arrow IPC bodies for `models.predict_table`. pyarrow is optional (the `arrow`
extra): the rest of the SDK never needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise ImportError(
            "models.predict_table needs pyarrow: pip install 'shardtrain[arrow]'"
        ) from exc
    return pyarrow


def encode(table: pa.Table) -> bytes:
    pa = _pyarrow()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode(content: bytes) -> pa.Table:
    return _pyarrow().ipc.open_stream(content).read_all()
