from app.paramstore.redis_store import ParamStore

__all__ = ["ParamStore"]
