from app.config import Settings
from app.storage.cache import LocalCache
from app.storage.interface import BlobSink, BlobStore
from app.storage.local import BlobWriter, LocalBlobStore


def open_store(settings: Settings) -> BlobStore:
    """The store `SHARDTRAIN_STORAGE_URL` names: an S3 bucket with this host's cache,
    or a local directory."""
    if settings.s3_storage:
        # Imported here: boto3 costs every process tens of MB, and only S3 needs it.
        from app.storage.s3 import S3BlobStore, s3_client

        assert settings.storage_url is not None
        return S3BlobStore(
            settings.storage_url,
            LocalCache(settings.object_cache_dir, settings.cache_bytes),
            client=s3_client(read_timeout_s=settings.s3_read_timeout_s),
        )
    return LocalBlobStore(settings.blob_dir)


__all__ = ["BlobSink", "BlobStore", "BlobWriter", "LocalBlobStore", "open_store"]
