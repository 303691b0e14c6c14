"""Create tenants, issue and revoke keys, and resolve a presented key to its tenant."""

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.tables import ApiKey, Tenant
from app.tables.base import now_s
from app.tenancy.repository import TenantRepository

KEY_PREFIX = "sk_"
VISIBLE_CHARS = 12


class TenancyError(ValueError):
    pass


@dataclass(frozen=True)
class IssuedKey:
    """The only moment the secret exists outside the client: it is never stored."""

    id: str
    tenant: str
    secret: str
    prefix: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(session: Session, name: str) -> Tenant:
    repository = TenantRepository(session)
    if repository.by_name(name) is not None:
        raise TenancyError(f"tenant {name!r} already exists")
    return repository.add(Tenant(name=name))


def ensure_tenant(session: Session, name: str) -> Tenant:
    return TenantRepository(session).by_name(name) or create_tenant(session, name)


def create_key(session: Session, tenant_name: str) -> IssuedKey:
    repository = TenantRepository(session)
    tenant = repository.by_name(tenant_name)
    if tenant is None:
        raise TenancyError(f"no tenant named {tenant_name!r}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)  # 32 random bytes
    key = repository.add_key(
        ApiKey(tenant_id=tenant.id, prefix=secret[:VISIBLE_CHARS], hash=digest(secret))
    )
    return IssuedKey(id=key.id, tenant=tenant.name, secret=secret, prefix=key.prefix)


def revoke_key(session: Session, handle: str) -> ApiKey:
    key = TenantRepository(session).key_by_id_or_prefix(handle)
    if key is None:
        raise TenancyError(f"no key with id or prefix {handle!r}")
    if key.revoked_at is None:
        key.revoked_at = now_s()
    return key


def set_limit(session: Session, tenant_name: str, name: str, value: int) -> Tenant:
    from app.tenancy.limits import LIMIT_NAMES

    if name not in LIMIT_NAMES:
        raise TenancyError(f"unknown limit {name!r}; one of {', '.join(LIMIT_NAMES)}")
    if value < 1:
        raise TenancyError("a limit must be at least 1")
    tenant = TenantRepository(session).by_name(tenant_name)
    if tenant is None:
        raise TenancyError(f"no tenant named {tenant_name!r}")
    # A new dict, so the JSON column sees the change.
    tenant.limits = {**(tenant.limits or {}), name: value}
    return tenant


def key_for_secret(session: Session, secret: str) -> ApiKey | None:
    """The live key whose secret this is, or None."""
    return TenantRepository(session).key_by_hash(digest(secret))


def tenant_for_key(session: Session, secret: str) -> str | None:
    """The tenant id a live key belongs to, or None."""
    key = key_for_secret(session, secret)
    return key.tenant_id if key is not None else None
