"""Named models: each succeeded job whose spec carries `model_name` adds the next
version of that name; the name lists its versions."""

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.database_health import DatabaseHealth, is_unavailable
from app.db import session_scope
from app.errors import APIError, DatabaseUnavailable
from app.jobs.events import record_event
from app.model_names.repository import ModelNameRepository
from app.model_names.schemas import ModelNameOut, ModelNameSummaryOut, version_out
from app.tables import RegisteredModel
from app.tables.base import now_s
from app.tenancy.scope import Scope


def add_version(session: Session, model: RegisteredModel, name: str) -> int:
    """Number `model` as the next version of `name`, in the session that registers it
    (finalize's, which commits once): the name's row stays locked until then, so two
    jobs ending together get consecutive versions."""
    named = ModelNameRepository(session, Scope.tenant(model.tenant_id)).lock_or_create(
        model.tenant_id, name
    )
    named.latest_version += 1
    named.updated_at = now_s()
    model.model_name, model.version = name, named.latest_version
    record_event(
        session,
        model.job_id,
        "model.versioned",
        f"model {model.id} is version {named.latest_version} of {name!r}",
        model_id=model.id,
        model_name=name,
        version=named.latest_version,
    )
    return named.latest_version


def get_model_name(session: Session, name: str, tenant_id: str) -> ModelNameOut:
    repository = ModelNameRepository(session, Scope.tenant(tenant_id))
    named = repository.by_name(name)
    if named is None:
        raise APIError(404, "not_found", f"No model named {name!r}.", "name")
    return ModelNameOut(
        id=named.id,
        name=named.name,
        latest_version=named.latest_version,
        versions=[version_out(m) for m in repository.versions(name)],
        created_at=named.created_at,
        updated_at=named.updated_at,
    )


def list_model_names(
    session: Session, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[ModelNameSummaryOut], bool]:
    rows, has_more = ModelNameRepository(session, Scope.tenant(tenant_id)).page(
        limit=limit, after=after
    )
    return [ModelNameSummaryOut.model_validate(r, from_attributes=True) for r in rows], has_more


def version_model_id(
    sessions: sessionmaker[Session],
    health: DatabaseHealth,
    name: str,
    version: int,
    tenant_id: str,
) -> str:
    """The model that is `version` of `name`, read in a short session of its own."""
    try:
        with session_scope(sessions) as session:
            repository = ModelNameRepository(session, Scope.tenant(tenant_id))
            model_id = repository.version_id(name, version)
            if model_id is not None:
                return model_id
            known = repository.by_name(name) is not None
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            raise
        health.failed(exc)
        raise DatabaseUnavailable() from None
    if not known:
        raise APIError(404, "not_found", f"No model named {name!r}.", "name")
    raise APIError(404, "not_found", f"Model {name!r} has no version {version}.", "version")
