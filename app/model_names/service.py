"""Named models: each succeeded job whose spec carries `model_name` adds the next
version of that name; the name lists its versions."""

from sqlalchemy.orm import Session, sessionmaker

from app.database_health import DatabaseHealth
from app.errors import APIError
from app.jobs.events import record_event
from app.model_names.repository import (
    ModelAliasChangeRepository,
    ModelAliasRepository,
    ModelNameRepository,
)
from app.model_names.resolution import NameResolver
from app.model_names.schemas import (
    ModelAliasChangeOut,
    ModelAliasOut,
    ModelNameOut,
    ModelNameSummaryOut,
    version_out,
)
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
    aliases = ModelAliasRepository(session, Scope.tenant(tenant_id)).of_name(name)
    by_version: dict[int, list[str]] = {}
    for alias in aliases:
        by_version.setdefault(alias.version, []).append(alias.alias)
    return ModelNameOut(
        id=named.id,
        name=named.name,
        latest_version=named.latest_version,
        versions=[
            version_out(m, by_version.get(m.version or 0, [])) for m in repository.versions(name)
        ],
        aliases=[ModelAliasOut.model_validate(a, from_attributes=True) for a in aliases],
        created_at=named.created_at,
        updated_at=named.updated_at,
    )


def list_alias_changes(
    session: Session, name: str, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[ModelAliasChangeOut], bool]:
    if ModelNameRepository(session, Scope.tenant(tenant_id)).by_name(name) is None:
        raise APIError(404, "not_found", f"No model named {name!r}.", "name")
    rows, has_more = ModelAliasChangeRepository(session, Scope.tenant(tenant_id)).page_of_name(
        name, limit=limit, after=after
    )
    return [ModelAliasChangeOut.model_validate(r) for r in rows], has_more


def list_model_names(
    session: Session, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[ModelNameSummaryOut], bool]:
    rows, has_more = ModelNameRepository(session, Scope.tenant(tenant_id)).page(
        limit=limit, after=after
    )
    return [ModelNameSummaryOut.model_validate(r, from_attributes=True) for r in rows], has_more


def version_model_id(
    resolver: NameResolver,
    sessions: sessionmaker[Session],
    health: DatabaseHealth,
    name: str,
    version: int,
    tenant_id: str,
) -> str:
    """The model that is `version` of `name`: it never changes, so it is read once."""

    def read(session: Session) -> str:
        repository = ModelNameRepository(session, Scope.tenant(tenant_id))
        model_id = repository.version_id(name, version)
        if model_id is not None:
            return model_id
        if repository.by_name(name) is None:
            raise APIError(404, "not_found", f"No model named {name!r}.", "name")
        raise APIError(404, "not_found", f"Model {name!r} has no version {version}.", "version")

    return resolver.resolve(
        sessions, health, (tenant_id, name, f"version:{version}"), read, moves=False
    )


def alias_model_id(
    resolver: NameResolver,
    sessions: sessionmaker[Session],
    health: DatabaseHealth,
    name: str,
    alias: str,
    tenant_id: str,
) -> str:
    """The model `alias` of `name` names now (see `NameResolver` for how fresh)."""

    def read(session: Session) -> str:
        model_id = ModelAliasRepository(session, Scope.tenant(tenant_id)).model_id(name, alias)
        if model_id is not None:
            return model_id
        if ModelNameRepository(session, Scope.tenant(tenant_id)).by_name(name) is None:
            raise APIError(404, "not_found", f"No model named {name!r}.", "name")
        raise APIError(404, "not_found", f"Model {name!r} has no alias {alias!r}.", "alias")

    return resolver.resolve(sessions, health, (tenant_id, name, f"alias:{alias}"), read, moves=True)
