"""Validation of pg_backup's options happens before anything runs."""

import pytest

from lifeboat_engine import backup, crypto
from lifeboat_engine.errors import LifeboatError

PUB = crypto.generate_identity()[1]


def base(tmp_path, **kw):
    p = {"tenant": "acme", "repository": str(tmp_path / "repo"), "recipients": [PUB]}
    p.update(kw)
    return p


@pytest.mark.parametrize("kw,option", [
    ({"engine": "mysql"}, "engine"),
    ({"tenant": "../x"}, "tenant"),
    ({"tenant": None}, "tenant"),
    ({"engine": "sqlite"}, "path"),
    ({"engine": "sqlite", "path": "/x.db", "schema": "s"}, "schema"),
    ({"engine": "sqlite", "path": "/x.db", "globals": True}, "globals"),
    ({"path": "/x.db"}, "path"),
    ({"compression": "gzip"}, "compression"),
    ({"compression_level": 0}, "compression_level"),
    ({"compression_level": 40}, "compression_level"),
    ({"compression_threads": -1}, "compression_threads"),
    ({"skip_if_newer_than": "soon"}, "skip_if_newer_than"),
    ({"recipients": None}, "recipients"),
    ({"recipients": ["nope"]}, "recipients"),
    ({"repository": "ftp://x"}, "repository"),
    ({"schema": "x" * 64}, "schema"),
    ({"database": "a\0b"}, "database"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_options_name_the_option_and_write_nothing(tmp_path, kw, option):
    with pytest.raises(LifeboatError) as e:
        backup.run(base(tmp_path, **kw))
    assert e.value.option == option, str(e.value)
    assert not (tmp_path / "repo").exists()


def test_allow_unencrypted_is_explicit(tmp_path):
    req = backup.BackupRequest(base(tmp_path, recipients=None, allow_unencrypted=True))
    assert req.recipients == []


def test_globals_only_job_list(tmp_path):
    req = backup.BackupRequest(base(tmp_path, tenant=None, globals=True, login_host="DB1.example.com"))
    assert [(j.tenant, j.format) for j in req.jobs] == [("_globals_db1-example-com", "globals")]
    req = backup.BackupRequest(base(tmp_path, globals=True))
    assert [j.format for j in req.jobs] == ["pgdump", "globals"]


def test_database_defaults_to_the_tenant(tmp_path):
    assert backup.BackupRequest(base(tmp_path)).database == "acme"
    assert backup.BackupRequest(base(tmp_path, database="saas", schema="acme")).database == "saas"
