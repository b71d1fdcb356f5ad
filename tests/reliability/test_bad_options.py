"""Every module, wrong types and values: a failed task whose message names the
option, and never a traceback. One playbook run for all cases."""

import lbtest

CASES = [
    ("pg_backup", {"tenant": "acme", "repository": "R", "compression_level": "high"}, "compression_level"),
    ("pg_backup", {"tenant": "acme", "repository": "R", "engine": "mysql"}, "engine"),
    ("pg_backup", {"tenant": "acme", "repository": "R", "allow_unencrypted": True, "skip_if_newer_than": "soon"},
     "skip_if_newer_than"),
    ("pg_backup", {"tenant": "acme", "repository": "R", "recipients": ["age1nope"]}, "recipient"),
    ("pg_backup", {"tenant": "acme", "repository": "R", "allow_unencrypted": True, "compression_level": 99},
     "compression_level"),
    ("backup_restore", {"tenant": "acme", "repository": "R", "jobs": "many"}, "jobs"),
    ("backup_restore", {"tenant": "acme", "repository": "R", "jobs": 0, "identity": "AGE-SECRET-KEY-1X"}, "jobs"),
    ("backup_restore", {"tenant": "acme", "repository": "R", "artifact": "../../etc/passwd",
                        "identity_file": "/nonexistent"}, "artifact"),
    ("backup_verify", {"repository": "R", "size_anomaly_ratio": "x"}, "size_anomaly_ratio"),
    ("backup_verify", {"repository": "R", "size_anomaly_ratio": 2.0}, "size_anomaly_ratio"),
    ("backup_verify", {"repository": "R", "max_age": "soon"}, "max_age"),
    ("backup_verify", {"repository": "R", "queries": [{"query": "SELECT 1; DROP TABLE x", "min": 1}]}, "queries"),
    ("backup_prune", {"repository": "R", "keep_daily": "seven"}, "keep_daily"),
    ("backup_prune", {"repository": "R", "keep_daily": -1}, "keep_daily"),
    ("backup_prune", {"repository": "R", "keep_daily": 1, "max_total_size": "big"}, "max_total_size"),
    ("age_encrypt", {"state": "bogus"}, "state"),
    ("age_encrypt", {"state": "keypair", "identity_file": "K", "armor": "maybe"}, "armor"),
    ("s3_lifecycle", {"bucket": "b", "purge_rules": "perhaps"}, "purge_rules"),
    ("s3_lifecycle", {"bucket": "b", "min_retention_days": "long"}, "min_retention_days"),
    ("tenant_anonymize", {"tenant": "acme", "older_than_days": "old", "rules": []}, "older_than_days"),
    ("tenant_anonymize", {"tenant": "acme", "engine": "sqlite", "path": "P", "hmac_secret": "a-long-test-secret-value",
                          "rules": [{"table": "guests", "timestamp": "t", "columns": {"email": "bogus"}}]}, "bogus"),
]


def test_wrong_types_and_values_fail_naming_the_option(tmp_path):
    tasks = []
    for i, (module, args, _option) in enumerate(CASES):
        args = dict((k, str(tmp_path / "repo") if v == "R" else str(tmp_path / "x.db") if v == "P" else
                     str(tmp_path / "key.txt") if v == "K" else v) for k, v in args.items())
        tasks.append({"name": "case %d" % i, "lifeboat.backup.%s" % module: args, "ignore_errors": True})
    run = lbtest.run_playbook(tasks)
    assert len(run.results) == len(CASES), run
    for (module, _args, option), res in zip(CASES, run.results):
        where = "%s %s" % (module, option)
        assert res.get("failed") is True, (where, res)
        assert option in res.get("msg", ""), (where, res.get("msg"))
        assert "Traceback" not in res.get("msg", "") and "module_stderr" not in res, (where, res)
    assert not (tmp_path / "repo").exists()
