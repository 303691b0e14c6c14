from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey, Tenant


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        self.session.flush()
        return tenant

    def by_name(self, name: str) -> Tenant | None:
        return self.session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()

    def add_key(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key

    def key_by_hash(self, digest: str) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.hash == digest, ApiKey.revoked_at.is_(None))
        return self.session.scalars(statement).one_or_none()

    def key_by_id_or_prefix(self, handle: str) -> ApiKey | None:
        statement = select(ApiKey).where((ApiKey.id == handle) | (ApiKey.prefix == handle))
        return self.session.scalars(statement).first()
