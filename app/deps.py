"""Annotated dependencies shared by the routes."""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.config import Settings
from app.database_health import DatabaseHealth, is_unavailable
from app.db import session_scope
from app.dispatch import Dispatcher
from app.errors import APIError, DatabaseUnavailable
from app.fleet import WorkerRegistry
from app.model_names.resolution import NameResolver
from app.registry.known_models import KnownModels
from app.registry.predictor import PredictorCache
from app.storage import BlobStore
from app.tenancy.limits import Limits, limits_for
from app.tenancy.service import digest, key_for_secret


# The plain lookups on app.state are coroutines so FastAPI calls them in the event
# loop: a sync dependency costs a thread-pool round trip on every request.
async def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.session_factory) as session:
        yield session


async def _store(request: Request) -> BlobStore:
    return request.app.state.store


async def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


async def _fleet(request: Request) -> WorkerRegistry:
    return request.app.state.fleet


async def _predictors(request: Request) -> PredictorCache:
    return request.app.state.predictors


async def _known_models(request: Request) -> KnownModels:
    return request.app.state.known_models


async def _name_resolver(request: Request) -> NameResolver:
    return request.app.state.name_resolver


async def _database_health(request: Request) -> DatabaseHealth:
    return request.app.state.database_health


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description=(
        "An API key (`sk_…`). `make run` prints a dev key and writes it to "
        "`$SHARDTRAIN_DATA_DIR/dev-api-key` (default `./.shardtrain/dev-api-key`); "
        "an operator makes others with `python -m app.admin create-key --tenant NAME`."
    ),
)


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    limits: Limits
    # The key's id (`key_…`, never the secret): who did what, in audit trails.
    key_id: str


# Operations that can answer from this process's memory while SQL is unreachable (predict
# on a model already served); only they may authenticate from KnownKeys then.
SERVED_DURING_DATABASE_OUTAGE = frozenset(
    {"models-predict", "model-names-predict-version", "model-names-predict-alias"}
)
# A key lookup is a read: when it fails on a connection that dies under it (a restart
# mid-query) it is simply done again, on a fresh connection, for this long.
_READ_RETRY_S = 2.0


class KnownKeys:
    """Keys this process resolved lately, by digest (never the secret), with their tenant
    and limits. Consulted only when SQL is unreachable: with SQL up every request reads
    its key afresh, so a revoked key fails on its next request."""

    def __init__(self, max_age_s: float, size: int = 10_000) -> None:
        self._max_age_s = max_age_s
        self._size = size
        self._items: OrderedDict[str, tuple[float, Caller]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, secret: str, caller: Caller) -> None:
        with self._lock:
            self._items[digest(secret)] = (time.monotonic(), caller)
            self._items.move_to_end(digest(secret))
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def forget(self, secret: str) -> None:
        with self._lock:
            self._items.pop(digest(secret), None)

    def get(self, secret: str) -> Caller | None:
        with self._lock:
            found = self._items.get(digest(secret))
        if found is None or time.monotonic() - found[0] > self._max_age_s:
            return None
        return found[1]


def _lookup_caller(request: Request, secret: str) -> Caller | None:
    with request.app.state.session_factory() as session:
        key = key_for_secret(session, secret)
        if key is None:
            return None
        settings = request.app.state.settings
        return Caller(key.tenant_id, limits_for(session, settings, key.tenant_id), key.id)


def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller's tenant and its limits, read in one session of their own on every
    request, so a revoked key fails on its very next request.

    It runs before the route reads the body, so during a database outage an upload is
    refused (503) before a byte of it is received."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise APIError(401, "missing_api_key", "Send `Authorization: Bearer <api key>`.")
    state = request.app.state
    health: DatabaseHealth = state.database_health
    known: KnownKeys = state.known_keys
    secret = credentials.credentials
    deadline = time.monotonic() + _READ_RETRY_S
    while True:
        try:
            caller = _lookup_caller(request, secret)
            break
        except SQLAlchemyError as exc:
            if not is_unavailable(exc):
                raise
            if not health.down and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            health.failed(exc)
            route = request.scope.get("route")
            if getattr(route, "operation_id", None) in SERVED_DURING_DATABASE_OUTAGE:
                cached = known.get(secret)
                if cached is not None:
                    return cached
            raise DatabaseUnavailable() from None
    health.recovered()
    if caller is None:
        known.forget(secret)
        raise APIError(401, "invalid_api_key", "The API key is not valid or was revoked.")
    known.remember(secret, caller)
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]


async def _tenant(caller: CallerDep) -> str:
    return caller.tenant_id


async def _limits(caller: CallerDep) -> Limits:
    return caller.limits


SettingsDep = Annotated[Settings, Depends(_settings)]
TenantDep = Annotated[str, Depends(_tenant)]
LimitsDep = Annotated[Limits, Depends(_limits)]


def rate_limit(action: str) -> Callable[..., None]:
    """A dependency that counts one `action` request against the tenant's minute."""

    def check(request: Request, tenant: TenantDep, limits: LimitsDep) -> None:
        per_minute = getattr(limits, f"{action}_per_minute")
        request.app.state.rate_limiter.hit(tenant, action, per_minute)

    return check


# scope="function": commit (and send queued messages) before the response goes
# out, so a client that reads right after a write sees it.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
StoreDep = Annotated[BlobStore, Depends(_store)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
PredictorsDep = Annotated[PredictorCache, Depends(_predictors)]
FleetDep = Annotated[WorkerRegistry, Depends(_fleet)]
KnownModelsDep = Annotated[KnownModels, Depends(_known_models)]
NameResolverDep = Annotated[NameResolver, Depends(_name_resolver)]
DatabaseHealthDep = Annotated[DatabaseHealth, Depends(_database_health)]
