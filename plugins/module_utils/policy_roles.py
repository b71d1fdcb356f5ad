# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles that a tenant's row-level security policies name (``CREATE POLICY ... TO app_role``).

``--no-owner`` and ``--no-privileges`` leave owners and grants out of a restore, but a policy's
roles are part of the policy: pg_restore fails on a server that lacks them. A verifier's scratch
server rarely has the application's roles, so the manifest records them (``source.policy_roles``;
older manifests lack it) and verification creates the missing ones on its scratch server as NOLOGIN
roles for the time of the check, then drops them. A restore says which roles are missing and
that the server's globals bring them (it never creates roles on a real server by itself).
"""

from .errors import LifeboatError

_NAMED = """
SELECT n.nspname, r.rolname
  FROM pg_catalog.pg_policy p
  JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_roles r ON r.oid = ANY (p.polroles)
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
 GROUP BY 1, 2 ORDER BY 1, 2
"""


def by_schema(conn):
    """{schema: [role, ...]} of the policies of the current database (PUBLIC is no role and is left out)."""
    out = {}
    for schema, role in conn.execute(_NAMED).fetchall():
        out.setdefault(schema, []).append(role)
    return out


def named(conn, schema=None):
    """The roles the policies of ``schema`` (or of the whole database) name, sorted."""
    found = by_schema(conn)
    if schema is not None:
        return list(found.get(schema, []))
    return sorted(set(r for roles in found.values() for r in roles))


def recorded(*docs):
    """The roles recorded in these manifests (``source.policy_roles``; none in older manifests)."""
    out = set()
    for doc in docs:
        out.update(((doc or {}).get("source") or {}).get("policy_roles") or [])
    return sorted(out)


def missing(conn, roles):
    if not roles:
        return []
    have = set(r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY (%s)",
                                          (list(roles),)).fetchall())
    return [r for r in roles if r not in have]


def create_for_check(conn, roles, what):
    """Create the ``roles`` this server lacks as NOLOGIN roles (a scratch server's, for a check): returns
    the ones this call created, which ``drop_created`` removes again."""
    from psycopg import errors, sql

    created = []
    for role in missing(conn, roles):
        try:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        except errors.DuplicateObject:
            continue  # another check made it meanwhile: it is that check's to drop
        except errors.InsufficientPrivilege as e:
            drop_created(conn, created)
            raise LifeboatError(
                "The row-level security policies of %s name the roles %s, which the verification server lacks, and "
                "its login may not create them (%s). Grant CREATEROLE to the verifier's login, or create the roles "
                "(NOLOGIN) on that server." % (what, ", ".join(missing(conn, roles)), str(e).strip()),
                option="login_user")
        created.append(role)
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(
            "lifeboat verify: made for the row-level security policies of %s while it is checked; safe to drop"
            % what)))
    return created


def drop_created(conn, created):
    """Drop the roles ``create_for_check`` made; one still in use (another check's scratch copy) stays."""
    from psycopg import errors, sql

    left = []
    for role in created:
        try:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        except errors.DependentObjectsStillInUse:
            left.append(role)
    return left
