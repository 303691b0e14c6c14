from app.paramstore.redis_store import ParamStore, ShardResult

__all__ = ["ParamStore", "ShardResult"]
