"""Aliases of a named model's versions: `champion`, moved by the champion gate or by
hand, and any a user sets (`staging`). Every move happens under the name's row lock,
is recorded with who made it and why, and bumps the tenant's alias generation once it
has committed, so that every API process resolves the alias afresh."""

from functools import partial

from sqlalchemy.orm import Session

from app.db import enqueue_after_commit
from app.errors import APIError
from app.model_names.repository import (
    ModelAliasChangeRepository,
    ModelAliasRepository,
    ModelNameRepository,
)
from app.model_names.resolution import AliasGenerations
from app.tables import ModelAlias, ModelAliasChange, ModelName, RegisteredModel
from app.tables.base import now_s
from app.tables.statuses import ModelStatus
from app.tenancy.scope import Scope

CHAMPION = "champion"


def locked_name(session: Session, name: str, tenant_id: str) -> ModelName:
    named = ModelNameRepository(session, Scope.tenant(tenant_id)).locked(name)
    if named is None:
        raise APIError(404, "not_found", f"No model named {name!r}.", "name")
    return named


def set_alias(
    session: Session,
    generations: AliasGenerations,
    *,
    tenant_id: str,
    name: str,
    alias: str,
    version: int,
    set_by: str,
    reason: str | None,
) -> ModelAlias:
    """Point `alias` at `version`. The champion must be a deployed version, and moving
    it by hand (a promotion or a rollback) needs a reason. Setting an alias to the
    version it already names changes nothing and records nothing."""
    scope = Scope.tenant(tenant_id)
    locked_name(session, name, tenant_id)
    model = ModelNameRepository(session, scope).version(name, version)
    if model is None:
        raise APIError(404, "not_found", f"Model {name!r} has no version {version}.", "version")
    if alias == CHAMPION:
        if not reason:
            raise APIError(
                422,
                "invalid_request",
                "reason: say why the champion is moved by hand; it is kept with the move.",
                "reason",
            )
        if model.status != ModelStatus.DEPLOYED:
            raise APIError(
                409,
                "version_not_deployed",
                f"Version {version} of {name!r} is {model.status}; only a deployed version "
                "can be champion (POST /v1/models/{model_id}/deploy deploys it).",
                "version",
            )
    current = ModelAliasRepository(session, scope).find(name, alias)
    if current is not None and current.version == version:
        return current
    return move_alias(session, generations, current, model, alias, set_by, reason)


def move_alias(
    session: Session,
    generations: AliasGenerations | None,
    current: ModelAlias | None,
    model: RegisteredModel,
    alias: str,
    set_by: str,
    reason: str | None,
) -> ModelAlias:
    """Point `alias` (now `current`, or none) at `model`; the caller holds the name's lock.
    Without `generations` (a caller with no Redis), API processes see the move once
    their remembered alias ages out (`SHARDTRAIN_ALIAS_CACHE_S`)."""
    assert model.model_name is not None and model.version is not None
    scope = Scope.tenant(model.tenant_id)
    _record_change(
        session,
        model.tenant_id,
        model.model_name,
        alias,
        current.version if current is not None else None,
        model.version,
        set_by,
        reason,
    )
    if current is None:
        current = ModelAliasRepository(session, scope).add(
            ModelAlias(
                tenant_id=model.tenant_id,
                model_name=model.model_name,
                alias=alias,
                version=model.version,
                model_id=model.id,
                set_by=set_by,
                reason=reason,
                updated_at=now_s(),
            )
        )
    else:
        current.version, current.model_id = model.version, model.id
        current.set_by, current.reason, current.updated_at = set_by, reason, now_s()
    if generations is not None:
        enqueue_after_commit(session, partial(generations.bump, model.tenant_id))
    return current


def delete_alias(
    session: Session,
    generations: AliasGenerations,
    *,
    tenant_id: str,
    name: str,
    alias: str,
    set_by: str,
    reason: str | None,
) -> ModelAlias:
    locked_name(session, name, tenant_id)
    current = ModelAliasRepository(session, Scope.tenant(tenant_id)).find(name, alias)
    if current is None:
        raise APIError(404, "not_found", f"Model {name!r} has no alias {alias!r}.", "alias")
    if alias == CHAMPION and not reason:
        raise APIError(
            422,
            "invalid_request",
            "reason: say why the champion is removed by hand; it is kept with the change.",
            "reason",
        )
    _record_change(session, tenant_id, name, alias, current.version, None, set_by, reason)
    session.delete(current)
    session.flush()
    enqueue_after_commit(session, partial(generations.bump, tenant_id))
    return current


def check_unaliased(session: Session, model: RegisteredModel) -> None:
    """A model an alias points to is not deleted: the alias's predictions would fail."""
    aliases = ModelAliasRepository(session, Scope.tenant(model.tenant_id)).pointing_to(model.id)
    if aliases:
        names = ", ".join(repr(a.alias) for a in aliases)
        raise APIError(
            409,
            "model_in_use",
            f"Model {model.id} is version {model.version} of {model.model_name!r}, which "
            f"alias {names} points to; move or delete the alias first.",
            "id",
        )


def _record_change(
    session: Session,
    tenant_id: str,
    name: str,
    alias: str,
    from_version: int | None,
    to_version: int | None,
    set_by: str,
    reason: str | None,
) -> None:
    ModelAliasChangeRepository(session, Scope.tenant(tenant_id)).add(
        ModelAliasChange(
            tenant_id=tenant_id,
            model_name=name,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            set_by=set_by,
            reason=reason,
            created_at=now_s(),
        )
    )
