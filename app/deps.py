"""Annotated dependencies shared by the routes."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.dispatch import Dispatcher
from app.errors import APIError
from app.fleet import WorkerRegistry
from app.registry.predictor import PredictorCache
from app.storage import BlobStore
from app.tenancy.limits import Limits, limits_for
from app.tenancy.service import tenant_for_key


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


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`sk_…`) from `python -m app.admin create-key --tenant NAME`.",
)


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    limits: Limits


def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller's tenant and its limits, read in one session of their own on every
    request, so a revoked key fails on its very next request."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise APIError(401, "missing_api_key", "Send `Authorization: Bearer <api key>`.")
    with request.app.state.session_factory() as session:
        tenant_id = tenant_for_key(session, credentials.credentials)
        if tenant_id is None:
            raise APIError(401, "invalid_api_key", "The API key is not valid or was revoked.")
        return Caller(tenant_id, limits_for(session, request.app.state.settings, tenant_id))


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
