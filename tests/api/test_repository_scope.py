"""Every repository of a tenant-owned table reads under the scope its caller names: a
tenant's scope sees that tenant's rows alone, in get, page and the counts; SYSTEM sees
every tenant's. Runs on PostgreSQL and SQLite, on a migration-built database."""

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.datasets.repository import DatasetRepository
from app.jobs.repository import JobRepository
from app.repository import OutOfScope
from app.tables import Dataset, Job
from app.tables.base import now_s
from app.tables.statuses import JobStatus
from app.tenancy.scope import SYSTEM, Scope
from app.tenancy.service import create_tenant


def dataset(tenant_id: str, *, bytes_: int, deleted: bool = False) -> Dataset:
    return Dataset(
        tenant_id=tenant_id,
        name="d.csv",
        filename="d.csv",
        format="csv",
        bytes=bytes_,
        sha256="0" * 64,
        raw_key="raw",
        deleted_at=now_s() if deleted else None,
    )


def job(tenant_id: str, dataset_id: str, status: JobStatus) -> Job:
    return Job(tenant_id=tenant_id, dataset_id=dataset_id, spec={}, rounds=1, status=status)


@pytest.fixture
def two_tenants(sessions: sessionmaker[Session]) -> Iterator[tuple[Session, str, str]]:
    """Tenants a and b, each with two live datasets (and a deleted one), a running job
    and a finished one."""
    with sessions() as session:
        a, b = create_tenant(session, "a").id, create_tenant(session, "b").id
        for tenant_id, size in ((a, 10), (b, 1000)):
            first = DatasetRepository(session, SYSTEM).add(dataset(tenant_id, bytes_=size))
            DatasetRepository(session, SYSTEM).add(dataset(tenant_id, bytes_=size))
            DatasetRepository(session, SYSTEM).add(dataset(tenant_id, bytes_=7, deleted=True))
            for status in (JobStatus.RUNNING, JobStatus.SUCCEEDED):
                JobRepository(session, SYSTEM).add(job(tenant_id, first.id, status))
        session.commit()
        yield session, a, b


def test_a_tenant_scope_reads_its_own_rows_alone(two_tenants: tuple[Session, str, str]) -> None:
    session, a, b = two_tenants
    own, other = JobRepository(session, Scope.tenant(a)), JobRepository(session, Scope.tenant(b))
    a_jobs, more = own.page(limit=10, after=None)
    assert not more and {j.tenant_id for j in a_jobs} == {a} and len(a_jobs) == 2
    for found in a_jobs:
        assert own.get(found.id) is found
        assert other.get(found.id) is None
        assert other.get(found.id, for_update=True) is None
    assert own.count_active() == 1
    assert own.count_by_status() == {"running": 1, "succeeded": 1}
    assert own.dataset_ids([j.id for j in a_jobs]) == {j.id: j.dataset_id for j in a_jobs}
    assert other.dataset_ids([j.id for j in a_jobs]) == {}


def test_the_system_scope_reads_every_tenant(two_tenants: tuple[Session, str, str]) -> None:
    session, a, b = two_tenants
    jobs = JobRepository(session, SYSTEM)
    everyone, _ = jobs.page(limit=10, after=None)
    assert {j.tenant_id for j in everyone} == {a, b} and len(everyone) == 4
    assert jobs.count_active() == 2
    assert DatasetRepository(session, SYSTEM).stored_bytes() == 2 * 10 + 2 * 1000


def test_dataset_reads_skip_deleted_rows_in_every_scope(
    two_tenants: tuple[Session, str, str],
) -> None:
    session, a, b = two_tenants
    own = DatasetRepository(session, Scope.tenant(a))
    live, _ = own.page(limit=10, after=None)
    assert len(live) == 2 and all(d.deleted_at is None for d in live)
    assert own.stored_bytes() == 20
    assert DatasetRepository(session, Scope.tenant(b)).stored_bytes() == 2000
    deleted = session.query(Dataset).filter(Dataset.deleted_at.is_not(None)).all()
    assert len(deleted) == 2
    for row in deleted:
        assert DatasetRepository(session, SYSTEM).get(row.id) is None
        # `states` is the one read that still sees a deleted row, and only in scope.
        assert row.id in DatasetRepository(session, SYSTEM).states([row.id])
        assert (row.id in own.states([row.id])) == (row.tenant_id == a)


def test_pages_follow_the_cursor_inside_the_scope(two_tenants: tuple[Session, str, str]) -> None:
    session, a, _ = two_tenants
    own = JobRepository(session, Scope.tenant(a))
    first, more = own.page(limit=1, after=None)
    assert more
    second, more = own.page(limit=1, after=first[0].id)
    assert not more and second[0].id != first[0].id and second[0].tenant_id == a


def test_a_tenant_scope_refuses_another_tenants_row(
    two_tenants: tuple[Session, str, str],
) -> None:
    session, a, b = two_tenants
    with pytest.raises(OutOfScope):
        DatasetRepository(session, Scope.tenant(a)).add(dataset(b, bytes_=1))
    with pytest.raises(ValueError):
        Scope.tenant("")
