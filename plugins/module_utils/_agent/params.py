# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the agent gives the engines: their parameters from the configuration (connections,
S3, the tenant, the age identity), checked against the engine's OPTIONS; the jobs that run
them, and the small secret-free summaries the workers send back."""

import inspect
import os

from .. import naming
from ..agent_runner import Job
from ..errors import LifeboatError
from .._s3.options import from_agent
from ..repository import open_repository


CREDENTIAL_DEFAULT = "age-identity"


def _read_secret_file(path, key):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read(65536).strip()
    except OSError as e:
        raise LifeboatError("Cannot read %s %s: %s." % (key, path, e.strerror), option=key)


def connection_params(conn, key="connection"):
    out = {}
    for name in ("login_host", "login_port", "login_user", "login_unix_socket", "pg_bin_dir"):
        if conn.get(name) is not None:
            out[name] = conn[name]
    if conn.get("login_password_file"):
        out["login_password"] = _read_secret_file(conn["login_password_file"], key + ".login_password_file")
    return out


def s3_params(config, connection_only=False):
    """The engines' S3 options from the ``s3`` settings (``endpoint_url`` -> ``s3_endpoint_url``, s3.from_agent);
    ``connection_only`` for the engines that only read (restore)."""
    s3 = config["s3"] or {}
    out = from_agent(s3, connection_only)
    if s3.get("secret_key_file"):
        out["s3_secret_key"] = _read_secret_file(s3["secret_key_file"], "s3.secret_key_file")
    return out


def tenant_params(config, name):
    t = config.tenant(name)
    out = {"tenant": name, "engine": t["engine"]}
    if t["engine"] == "sqlite":
        out["path"] = t["path"]
    else:
        out["database"] = t.get("database")
        if t.get("schema"):
            out["schema"] = t["schema"]
        out.update(connection_params(t["connection"], "tenants.%s.connection" % name if name in config["tenants"]
                                     else "connection"))
    return out


def filter_params(module, params, name):
    """Only options the engine knows; an unknown one would be a bug of ours, so say which."""
    options = getattr(module, "OPTIONS", None)
    if options is None:
        return params
    unknown = sorted(k for k in params if k not in options)
    if unknown:
        raise LifeboatError("The %s engine of this installation does not accept %s; the agent and the engine are "
                            "from different versions. Reinstall the agent's package." % (name, ", ".join(unknown)))
    return params


def globals_label(config):
    host = (config["connection"] or {}).get("login_host")
    if not host or host in ("localhost", "127.0.0.1", "::1"):
        host = os.uname()[1]
    # As pg_backup names it: a server on another port than 5432 is _globals_<host>-p<port>.
    return naming.globals_tenant(host, (config["connection"] or {}).get("login_port"))


def wants_globals(config, names):
    if config["globals"] is not None:
        return config["globals"]
    return any(config.tenant(n)["engine"] == "postgresql" for n in names)


# -- summaries the workers send back (small, secret-free) -----------------------------------

def summarize_backup(result):
    first = (result.get("artifacts") or [{}])[0]
    return {
        "skipped": bool(result.get("skipped")),
        "artifact": first.get("artifact"),
        "size_stored": first.get("size_stored"),
        "size_raw": first.get("size_raw"),
        "rows": first.get("rows"),
        "bytes": first.get("size_raw") or 0,
        "reason": first.get("reason"),
        "warnings": "; ".join(result.get("warnings") or []) or None,
        "warning_count": len(result.get("warnings") or []),
    }


def summarize_restore(result):
    return {"artifact": result.get("artifact"), "rows": result.get("rows"), "msg": result.get("msg"),
            "target": result.get("target_database") or result.get("target_path")}


def summarize_verify(result):
    tenants = result.get("tenants") or []
    report = tenants[0] if tenants else {}
    out = {"verify_status": result.get("status"), "artifact": report.get("artifact") or result.get("artifact"),
           "warnings": ",".join(report.get("warnings") or []) or None}
    if result.get("status") == "FAIL":
        fails = [c for c in report.get("checks") or [] if c.get("status") == "FAIL"]
        detail = "; ".join("%s: %s" % (c.get("name"), c.get("detail")) for c in fails)
        out["error"] = "verification FAILED: " + (detail or result.get("msg", ""))
    return out


def summarize_prune(result):
    summary = ((result.get("report") or {}).get("summary")) or {}
    out = {"deleted": len(result.get("deleted") or []), "kept": len(result.get("kept") or []),
           "bytes_deleted": summary.get("bytes_deleted")}
    skipped = result.get("skipped_tenants")
    if skipped:
        out["note"] = "; ".join(skipped.values())
    return out


def summarize_anonymize(result):
    return {"rows_scrubbed": result.get("rows_scrubbed"), "rows_to_scrub": result.get("rows_to_scrub"),
            "cutoff": result.get("cutoff"), "older_than_days": result.get("older_than_days"),
            "skipped": not result.get("changed")}


def _accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def make_job(label, fn, params, summarize, check_mode=False, **kwargs):
    if check_mode:
        kwargs["check_mode"] = True
    return Job(label, fn, params, kwargs=kwargs, summarize=summarize, progress=_accepts(fn, "progress"))


def identity_source(config, environ=None):
    """(path, where): systemd's credential (LoadCredential=) first, then verify.identity_file."""
    environ = os.environ if environ is None else environ
    verify = config["verify"] or {}
    name = verify.get("identity_credential") or CREDENTIAL_DEFAULT
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path, "credential"
    if verify.get("identity_file"):
        return verify["identity_file"], "file"
    return None, ("environment" if environ.get("BACKUP_PRIVATE_KEY") else None)


def credential_path(config, environ=None):
    return identity_source(config, environ)[0]


def repo_options(config):
    return s3_params(config, connection_only=True)


def repository_tenants(config):
    try:
        return set(open_repository(config["repository"], create=False, **repo_options(config)).tenants())
    except LifeboatError:
        return set()
