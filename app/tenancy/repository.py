from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.tables import ApiKey, Tenant


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Hold the tenant until this transaction ends, so that a quota counted after this
    call stays true until the row it admits is committed. Call it before the count.

    PostgreSQL: a row lock. FOR NO KEY UPDATE rather than FOR UPDATE: the foreign-key
    checks of other transactions' inserts (KEY SHARE) need not wait for it.
    SQLite has no row locks; a write takes the database's write lock, and
    pysqlite opens the transaction at that first write, so the count that follows
    reads the newest commit. A transaction that reads first and writes later could
    instead fail with SQLITE_BUSY in WAL mode rather than wait.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(created_at=Tenant.created_at)
            .execution_options(synchronize_session=False)
        )
    else:
        session.execute(
            select(Tenant.seq).where(Tenant.id == tenant_id).with_for_update(key_share=True)
        )


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
