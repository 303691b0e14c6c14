"""Databases for tests: created fresh, built by `alembic upgrade head`, dropped after."""

import os
import secrets
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

from app.db import session_factory, session_scope
from app.tenancy.service import create_key, ensure_tenant

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "SHARDTRAIN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def create_postgres_database() -> tuple[str, str]:
    """A fresh database per test session, so runs never see each other's rows."""
    name = f"shardtrain_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def issue_key(database_url: str, tenant: str) -> str:
    """A real tenant and API key, made the way `python -m app.admin` makes them."""
    with session_scope(session_factory(database_url)) as session:
        ensure_tenant(session, tenant)
        return create_key(session, tenant).secret
