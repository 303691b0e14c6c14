"""Operator commands: `python -m app.admin create-tenant NAME`, `create-key --tenant NAME`,
`revoke-key KEY_ID_OR_PREFIX`, `set-limit --tenant NAME LIMIT VALUE`.
A new key is printed once and never stored in clear."""

import argparse
import sys

from app.db import session_scope
from app.tenancy.service import (
    TenancyError,
    create_key,
    create_tenant,
    revoke_key,
    set_limit,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardtrain-admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tenant = commands.add_parser("create-tenant", help="create a tenant")
    tenant.add_argument("name")
    key = commands.add_parser("create-key", help="issue an API key for a tenant")
    key.add_argument("--tenant", required=True)
    revoke = commands.add_parser("revoke-key", help="revoke a key, effective at once")
    revoke.add_argument("key", help="the key's id (key_…) or its visible prefix (sk_…)")
    limit = commands.add_parser("set-limit", help="override one quota or rate limit")
    limit.add_argument("--tenant", required=True)
    limit.add_argument("name", help="max_running_jobs, max_stored_bytes, max_shards, …")
    limit.add_argument("value", type=int)
    args = parser.parse_args(argv)
    try:
        with session_scope() as session:
            if args.command == "create-tenant":
                created = create_tenant(session, args.name)
                print(f"tenant {created.name} ({created.id})")
            elif args.command == "create-key":
                issued = create_key(session, args.tenant)
                print(issued.secret)
                print(f"key {issued.id} for tenant {issued.tenant}; shown once", file=sys.stderr)
            elif args.command == "set-limit":
                changed = set_limit(session, args.tenant, args.name, args.value)
                print(f"tenant {changed.name}: {args.name} = {args.value}")
            else:
                revoked = revoke_key(session, args.key)
                print(f"revoked {revoked.id} ({revoked.prefix}…)")
    except TenancyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
