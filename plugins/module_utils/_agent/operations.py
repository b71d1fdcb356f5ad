# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The subcommands that run an engine over the tenants: backup, restore, verify, prune, anonymize."""

import os

from .. import agent_config, agent_metrics, agent_pass, naming
from ..crypto import TENANT_RECIPIENT_KEYS, tenant_recipient_params
from .. import anonymize as anonymize_engine
from .. import backup as backup_engine
from .. import backup_pass
from .. import prune as prune_engine
from .. import restore as restore_engine
from .. import verify as verify_engine
from ..errors import LifeboatError
from ..repository import open_repository
from .params import (CREDENTIAL_DEFAULT, connection_params, credential_path, filter_params, globals_label, identity_source,
                     make_job, repo_options, repository_tenants, s3_params, summarize_anonymize, summarize_backup,
                     summarize_prune, summarize_restore, summarize_verify, tenant_params, wants_globals)
from .session import Session, find_tenants, protection, run_jobs, select_tenants


def _figures_backup(o):
    figures = {"warning_count": o.info.get("warning_count") or 0} if o.ok else {}  # skipped runs count too
    if o.status == "ok":
        figures.update((k, o.info.get(k)) for k in ("size_stored", "size_raw", "artifact") if o.info.get(k) is not None)
    return figures


def _figures_verify(o):
    if o.status == "ok" and o.info.get("verify_status") == "ERASED":
        return {"artifact_time": None}  # erased on purpose (tenant_erase): no verified artifact left to grow old
    when = agent_metrics.artifact_time(o.info.get("artifact")) if o.status == "ok" else None
    return {"artifact_time": when} if when is not None else {}


def _figures_anonymize(o):
    if o.status not in ("ok", "skipped"):
        return {}
    out = {"rows_scrubbed": o.info.get("rows_scrubbed")}
    if o.info.get("cutoff"):
        out["cutoff_time"] = int(naming.parse_iso(o.info["cutoff"]).timestamp())
    if o.info.get("older_than_days") is not None:
        out["pii_budget"] = o.info["older_than_days"] * 86400
    return out


def tenant_recipients(config, common, name):
    """The recipients and recipients_file of tenant ``name``'s artifacts when it has its own
    (tenants.<name>.recipients...), else None (the top-level ones)."""
    if not any(config.tenant(name).get(k) for k in TENANT_RECIPIENT_KEYS):
        return None
    chosen = tenant_recipient_params(common, config.tenant(name), "tenants.%s" % name)
    return dict((k, v) for k, v in chosen.items() if v is not None)


def cmd_backup(args, config, log):
    engine = backup_engine
    config.require("repository", "to back up: the folder or s3://bucket/prefix that receives the artifacts")
    if not config.get("recipients") and not config.get("recipients_file") and not config["allow_unencrypted"] and \
            not any(t.get("recipients") or t.get("recipients_file") for t in config["tenants"].values()):
        raise agent_config.ConfigError(config.where, "recipients",
                                       "is required to back up (or recipients_file, or a tenant's own): the age "
                                       "public keys that artifacts are encrypted to. Database hosts hold recipients "
                                       "only.")
    found = find_tenants(config, log, "backup")
    names = select_tenants(config, args.tenant, "back up", found)
    common = {"repository": config["repository"], "compression_level": config["compression_level"],
              "skip_if_newer_than": config["skip_if_newer_than"], "tmp_dir": config.get("tmp_dir")}
    if config.get("recipients"):
        common["recipients"] = config["recipients"]
    if config.get("recipients_file"):
        common["recipients_file"] = config["recipients_file"]
    if config["allow_unencrypted"]:
        common["allow_unencrypted"] = True
    common.update(s3_params(config))
    common = dict((k, v) for k, v in common.items() if v is not None)
    jobs = []
    # The schema tenants of one database go in one pass (one snapshot, the shared part first).
    alone, passes = agent_pass.split_schema_tenants(names, lambda n: tenant_params(config, n))
    for name in alone:
        params = dict(common, **tenant_params(config, name))
        own = tenant_recipients(config, common, name)
        if own is not None:  # replaces both of the top-level recipients and recipients_file
            params = dict(dict((k, v) for k, v in params.items() if k not in ("recipients", "recipients_file")), **own)
        jobs.append(make_job(name, engine.run, filter_params(engine, params, "backup"), summarize_backup,
                             check_mode=args.check))
    for entry in passes:
        for member in entry["members"]:  # a schema tenant's own recipients (backup_pass.member_recipients)
            own = config.tenant(member["tenant"])
            member.update((k, own[k]) for k in TENANT_RECIPIENT_KEYS if own.get(k))
        others = [t["schema"] for t in found.tenants if t.get("schema") and t.get("database") == entry["database"]
                  and t["name"] not in names]
        params = dict(common, database=entry["database"], schemas=entry["members"],
                      shared_exclude=[agent_pass.glob_literal(s) for s in others] or None, **entry["connection"])
        params = dict((k, v) for k, v in params.items() if v is not None)
        jobs.append(make_job(entry["label"], backup_pass.run, filter_params(engine, params, "backup"),
                             agent_pass.summarize_pass, check_mode=args.check))
    labels = list(alone) + [n for p in passes for n in [naming.shared_tenant(p["database"])] +
                            [m["tenant"] for m in p["members"]]]
    if wants_globals(config, names) and not args.no_globals and not args.tenant:
        params = dict(common, globals=True, **connection_params(config["connection"]))
        label = globals_label(config)
        labels.append(label)
        jobs.append(make_job(label, engine.run, filter_params(engine, params, "backup"), summarize_backup,
                             check_mode=args.check))
    # Every tenant runs in a fork of this process: ask pg_dump and pg_dumpall for their versions once, here.
    engine.postgres.warm_tool_versions(bin_dir=(config.get("connection") or {}).get("pg_bin_dir"))
    return run_jobs(args, config, log, "backup", jobs, config["parallel"], labels, _figures_backup,
                    after=protection(args, config, log, "backup", found, config["repository"]), passes=passes)


def cmd_restore(args, config, log):
    engine = restore_engine
    repo = config.require("repository", "to restore: where the artifacts are")
    naming.validate_tenant(args.tenant_name, "tenant")
    params = dict(tenant_params(config, args.tenant_name), repository=repo, artifact=args.artifact)
    identity = args.identity_file or credential_path(config)
    if identity:
        params["identity_file"] = identity
    for key in ("target_database", "target_path"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.force:
        params["force"] = True
    for key in ("replace_target", "source_tenant"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.drop_replaced:
        params["keep_safety_copy"] = False
    if args.jobs:
        params["jobs"] = args.jobs
    params.update(s3_params(config, connection_only=True))  # restore only reads
    job = make_job(args.tenant_name, engine.run, filter_params(engine, params, "restore"), summarize_restore,
                   check_mode=args.check)
    session = Session(args, config, "restore", log)
    outcomes = session.run([job], 1)
    return session.finish(outcomes)


def cmd_verify(args, config, log):
    engine = verify_engine
    verify = config["verify"] or {}
    repository = verify.get("repository") or config.get("repository")
    if not repository:
        raise agent_config.ConfigError(config.where, "verify.repository",
                                       "is required to verify (or the top-level repository): where the artifacts are.")
    identity, source = identity_source(config)
    if not source and verify.get("identity_dir"):
        source = "identity_dir"
    if not source:
        raise agent_config.ConfigError(
            config.where, "verify.identity_credential",
            "no age identity: the unit gives it with LoadCredential=%s:<file> (CREDENTIALS_DIRECTORY is %s), or set "
            "verify.identity_file. Verification decrypts, so it needs the identity; database hosts never hold it."
            % (verify.get("identity_credential") or CREDENTIAL_DEFAULT,
               os.environ.get("CREDENTIALS_DIRECTORY") or "not set"))
    common = {"repository": repository}
    if identity:
        common["identity_file"] = identity
    if verify.get("identity_dir"):  # each tenant's own identity file there, besides the repository-wide one
        common["identity_dir"] = verify["identity_dir"]
    common.update(connection_params(verify.get("connection") or config["connection"], "verify.connection"))
    common.update(s3_params(config))
    if config.get("tmp_dir"):
        common["tmp_dir"] = config["tmp_dir"]
    if verify.get("artifact"):
        common["artifact"] = verify["artifact"]
    common.update(verify.get("options") or {})
    found = None
    if not verify.get("tenants"):
        found = find_tenants(config, log, "verify")
    if args.tenant:
        names = select_tenants(config, args.tenant, "verify")
    else:
        names = verify.get("tenants") or found.names
        if not names:
            repo = open_repository(repository, create=False, **repo_options(config))
            names = repo.tenants()
            if not names:
                raise LifeboatError("The repository %s holds no tenant yet: nothing to verify." % repository,
                                    option="verify.repository")
    jobs = []
    for name in names:
        params = dict(common, tenant=name)
        jobs.append(make_job(name, engine.run, filter_params(engine, params, "verify"), summarize_verify,
                             check_mode=args.check))
    after = protection(args, config, log, "verify", found, repository) if found and found.configured else None
    return run_jobs(args, config, log, "verify", jobs, verify.get("parallel") or config["parallel"], names,
                    _figures_verify, start=[("identity", source)], after=after,
                    run_info={"budget": verify.get("budget") or agent_config.VERIFY_BUDGET})


def cmd_prune(args, config, log):
    engine = prune_engine
    repository = config.require("repository", "to prune: where the artifacts are")
    retention = config["retention"]
    common = {"repository": repository}
    for key in ("daily", "weekly", "monthly", "yearly"):
        if retention.get(key) is not None:  # 0 keeps none by that rule, as keep_<rule>: 0 does in backup_prune
            common["keep_" + key] = retention[key]
    common.update(s3_params(config))
    common.update((config["prune"] or {}).get("options") or {})
    # Discovered tenants are rotated too (a tenant that is not discovered anymore keeps its artifacts).
    names = select_tenants(config, args.tenant, "prune", find_tenants(config, log, "prune"))
    labels = list(names)
    if wants_globals(config, names) and not args.tenant:
        labels.append(globals_label(config))
    if not args.tenant:
        # The shared parts of the databases that hold schema tenants rotate too (prune keeps the ones that
        # kept tenant artifacts name); a database never backed up in a pass has none.
        repo_tenants = repository_tenants(config)
        labels += sorted(set(naming.shared_tenant(config.tenant(n)["database"]) for n in names
                             if config.tenant(n).get("schema")) & repo_tenants)
    jobs = [make_job(n, engine.run, filter_params(engine, dict(common, tenant=n), "prune"), summarize_prune,
                     check_mode=args.check) for n in labels]
    # Prune is metadata work: one at a time is plenty and keeps S3 requests low.
    return run_jobs(args, config, log, "prune", jobs, 1, labels,
                    lambda o: {"deleted": o.info.get("deleted")} if o.status == "ok" else {})


def cmd_anonymize(args, config, log):
    engine = anonymize_engine
    anon = config["anonymize"] or {}
    names = select_tenants(config, args.tenant, "anonymize")
    environ = {}
    if config.env.get("pii_days") is not None:
        environ["PII_DAYS"] = str(config.env["pii_days"])
    jobs, skipped = [], []
    for name in names:
        t = config.tenant(name)
        rules = (anon.get("tenant_rules") or {}).get(name) or t.get("anonymize_rules") or anon.get("rules")
        if t.get("anonymize") is False or not rules:
            skipped.append(name)
            continue
        params = dict(tenant_params(config, name), rules=rules)
        for key in ("older_than_days", "hmac_secret_file", "batch_size", "lock_timeout"):
            if anon.get(key) is not None:
                params[key] = anon[key]
        if anon.get("retention_days") is not None and config.get("repository"):
            params["retention_days"] = anon["retention_days"]
            params["repository"] = config["repository"]
        jobs.append(make_job(name, engine.run, filter_params(engine, params, "anonymize"), summarize_anonymize,
                             check_mode=args.check, environ=environ))
    for name in skipped:
        log.line([("op", "anonymize"), ("tenant", name), ("status", "skipped"),
                  ("reason", "no anonymize rules for this tenant (anonymize.rules or tenants.%s.anonymize_rules)"
                   % name)])
    if not jobs:
        raise agent_config.ConfigError(config.where, "anonymize.rules",
                                       "no tenant has anonymize rules, so there is nothing to anonymize.")
    return run_jobs(args, config, log, "anonymize", jobs, config["parallel"], [j.label for j in jobs],
                    _figures_anonymize)
