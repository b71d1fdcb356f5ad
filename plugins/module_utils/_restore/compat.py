# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Can the target server take these artifacts? Checked in the plan, before anything is touched
(check mode gives the same answer, so dr_restore.yml asks it for every tenant first).

- The server's major version is at least the source's: PostgreSQL restores a dump into the same or a
  newer major version, never an older one (the dump's SQL is the source's).
- The host has a pg_restore that reads the archive (as new as the pg_dump that wrote it).
- Every extension the artifact creates (``source.extensions``, which newer manifests
  record; a schema tenant's ``depends_on.extensions``) is available on the server
  (``pg_available_extensions``). An older manifest records none: then pg_restore itself fails on
  the missing extension, into the fresh database that is then dropped.
"""

from .. import postgres
from ..errors import LifeboatError


def dump_major(*arts):
    """The newest pg_dump major version that wrote these artifacts (0: not recorded): pg_restore must be as new."""
    return max([postgres.major(str(a.source.get("pg_dump_version") or "")) for a in arts if a is not None] + [0])


def newer_source_major(source, server_major):
    """The major version of the server a dump came from (``source``, a manifest's), when it is newer than
    ``server_major``: PostgreSQL cannot restore it there. 0 when it can (or the manifest does not say)."""
    major = postgres.major(str((source or {}).get("server_version") or ""))
    return major if major and major > server_major else 0


def needed_extensions(art):
    """The extension names a restore of ``art`` creates or needs, from its manifest (empty when not recorded)."""
    names = [e.get("name") for e in art.source.get("extensions") or [] if isinstance(e, dict)]
    names += list((art.manifest.get("depends_on") or {}).get("extensions") or [])
    return sorted(set(n for n in names if n))


def check(server, arts):
    """Refuse, naming the artifact and the fix, what the target server cannot take. Nothing is changed here."""
    for art in arts:
        if art is None:
            continue
        version = art.source.get("server_version")
        source_major = newer_source_major(art.source, server.major)
        if source_major:
            raise LifeboatError(
                "%s was dumped from PostgreSQL %s, and the target server %s runs PostgreSQL %s: PostgreSQL restores "
                "a dump into the same or a newer major version only. Nothing was changed. Restore onto a server of "
                "PostgreSQL %d or newer (dr_restore.yml installs it on a fresh host with dr_postgresql_version=%d)."
                % (art.name, version, server.where, server.version, source_major, source_major),
                option="login_host", details={"source_server_version": version, "target_server_version": server.version})
        dumped = dump_major(art)
        try:
            server.tool("pg_restore", dumped)
        except LifeboatError as e:
            raise LifeboatError(
                "%s was written by pg_dump %s, and this host has no pg_restore that can read it (%s). Nothing was "
                "changed. Install postgresql-client-%d (dr_restore.yml's dr_provision does it) or set pg_bin_dir."
                % (art.name, art.source.get("pg_dump_version"), e, max(dumped, server.major)), option="pg_bin_dir")
        wanted = needed_extensions(art)
        missing = [name for name in wanted if name not in server.available_extensions()] if wanted else []
        if missing:
            raise LifeboatError(
                "%s needs the extension%s %s, which the target server %s (PostgreSQL %s) does not have "
                "(pg_available_extensions). Nothing was changed. Install the package that provides %s on that host "
                "(Debian: postgresql-contrib for the contrib modules, else postgresql-%d-<name>), then run again."
                % (art.name, "s" if len(missing) > 1 else "", ", ".join(missing), server.where, server.version,
                   "them" if len(missing) > 1 else "it", server.major),
                option="login_host", details={"missing_extensions": missing})
