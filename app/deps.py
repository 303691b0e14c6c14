"""Annotated dependencies shared by the routes."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.dispatch import Dispatcher
from app.fleet import WorkerRegistry
from app.registry.predictor import PredictorCache
from app.storage import BlobStore


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.session_factory) as session:
        yield session


def _store(request: Request) -> BlobStore:
    return request.app.state.store


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def _fleet(request: Request) -> WorkerRegistry:
    return request.app.state.fleet


def _predictors(request: Request) -> PredictorCache:
    return request.app.state.predictors


SettingsDep = Annotated[Settings, Depends(_settings)]
# scope="function": commit (and send queued messages) before the response goes
# out, so a client that reads right after a write sees it.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
StoreDep = Annotated[BlobStore, Depends(_store)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
PredictorsDep = Annotated[PredictorCache, Depends(_predictors)]
FleetDep = Annotated[WorkerRegistry, Depends(_fleet)]
