from app.storage.local import BlobStore, BlobWriter

__all__ = ["BlobStore", "BlobWriter"]
