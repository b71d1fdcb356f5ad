import datetime
import io
import os

import pytest

from lifeboat_engine import crypto, manifest, naming, pipeline, restore, restore_common, restore_pg
from lifeboat_engine.errors import LifeboatError

# -- option validation ---------------------------------------------------------------------------

BAD_OPTIONS = [
    # (params, option named, words in the message)
    ({}, "tenant", "required"),
    ({"tenant": "Bad Name"}, "tenant", "must match"),
    ({"tenant": "lb_r_0123456789abcdef0123"}, "tenant", "reserved"),
    ({"tenant": "a", "engine": "mysql"}, "engine", "postgresql or sqlite"),
    ({"tenant": "a", "jobs": 0}, "jobs", "1 (stream"),
    ({"tenant": "a", "jobs": 65}, "jobs", "64"),
    ({"tenant": "a", "jobs": True}, "jobs", "Invalid jobs"),
    ({"tenant": "a", "force": "yes"}, "force", "true or false"),
    ({"tenant": "a", "identity": "x", "identity_file": "/k"}, "identity", "mutually exclusive"),
    ({"tenant": "a", "target_database": "x" * 64}, "target_database", "63 bytes"),
    ({"tenant": "a", "target_database": "lb_s_0123456789abcdef0123"}, "target_database", "derives"),
    ({"tenant": "a", "engine": "sqlite"}, "target_path", "needs target_path"),
    ({"tenant": "a", "engine": "sqlite", "path": "/x.db", "target_database": "d"}, "target_database", "applies to"),
    ({"tenant": "a", "engine": "sqlite", "path": "/x.db", "privileges": True}, "privileges", "not sqlite"),
    ({"tenant": "a", "path": "/x.db"}, "path", "applies to engine sqlite"),
    ({"tenant": "a", "allow_create_in_dump": True, "target_database": "b"}, "allow_create_in_dump", "archive"),
    ({"tenant": "a", "bogus": 1}, "bogus", "Unknown option"),
]


@pytest.mark.parametrize("params,option,words", BAD_OPTIONS)
def test_invalid_options_are_refused_naming_the_option(params, option, words):
    with pytest.raises(LifeboatError) as e:
        restore.RestoreRequest(params)
    assert e.value.option == option
    assert words in str(e.value)


def test_defaults_and_sqlite_target_path():
    req = restore.RestoreRequest({"tenant": "acme"})
    assert (req.jobs, req.force, req.privileges, req.target_database) == (1, False, False, None)
    req = restore.RestoreRequest({"tenant": "acme", "engine": "sqlite", "path": "rel/acme.db"})
    assert req.target_path == os.path.abspath("rel/acme.db")
    req = restore.RestoreRequest({"globals_artifact": "latest"})
    assert req.tenant is None


# -- artifacts and manifests ----------------------------------------------------------------------------


@pytest.fixture
def keypair():
    ident, pub = crypto.generate_identity()
    return ident, pub


def _write_artifact(root, tenant, stamp, data, pub, fmt="pgdump", with_manifest=True, counts=None):
    d = os.path.join(root, tenant)
    os.makedirs(d, exist_ok=True)
    name = naming.artifact_name(tenant, stamp, fmt, True, True)
    out = io.BytesIO()
    sizes = pipeline.store(io.BytesIO(data), out, crypto.load_recipients([pub])[0], 3, 0)
    with open(os.path.join(d, name), "wb") as f:
        f.write(out.getvalue())
    if with_manifest:
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        doc = manifest.build(tenant, "postgresql", fmt, name, stamp, now, now, sizes, sizes["sha256"], 3, [pub],
                             counts or {"public.t": 3}, {"database": tenant})
        import json

        with open(os.path.join(d, naming.manifest_name(tenant, stamp)), "w") as f:
            json.dump(doc, f)
    return os.path.join(d, name)


def test_latest_is_the_newest_complete_artifact(tmp_path, keypair):
    root = str(tmp_path)
    old = _write_artifact(root, "acme", "20260101T000000Z", b"old", keypair[1])
    _write_artifact(root, "acme", "20260102T000000Z", b"newer but incomplete", keypair[1], with_manifest=False)
    art = restore.find_artifact(root, "latest", "acme", "pgdump", "artifact")
    assert art.path == old and art.stamp == "20260101T000000Z" and art.encrypted and art.compressed
    # the file name alone is looked up in the repository
    assert restore.find_artifact(root, os.path.basename(old), "acme", "pgdump", "artifact").path == old


@pytest.mark.parametrize("case,option,words", [
    ("no_manifest", "artifact", "no manifest"),
    ("only_incomplete", "artifact", "no complete pgdump artifact"),
    ("none", "artifact", "No pgdump artifact"),
    ("wrong_format", "engine", "engine: sqlite"),
    ("not_an_artifact", "artifact", "not the name of a lifeboat artifact"),
    ("missing_file", "artifact", "does not exist"),
    ("mixed_up", "artifact", "mixed up"),
    ("latest_without_repository", "repository", "needs repository"),
])
def test_artifact_problems_are_explained(tmp_path, keypair, case, option, words):
    root = str(tmp_path)
    spec = "latest"
    repo = root
    fmt = "pgdump"
    if case == "no_manifest":
        spec = _write_artifact(root, "acme", "20260101T000000Z", b"x", keypair[1], with_manifest=False)
    elif case == "only_incomplete":
        _write_artifact(root, "acme", "20260101T000000Z", b"x", keypair[1], with_manifest=False)
    elif case == "wrong_format":
        spec = _write_artifact(root, "acme", "20260101T000000Z", b"x", keypair[1], fmt="sqlite")
    elif case == "not_an_artifact":
        spec = os.path.join(root, "acme", "acme-20260101T000000Z.manifest.json")
    elif case == "missing_file":
        spec = os.path.join(root, "acme", "acme-20260101T000000Z.pgdump.zst.age")
    elif case == "mixed_up":
        a = _write_artifact(root, "acme", "20260101T000000Z", b"x", keypair[1])
        b = _write_artifact(root, "acme", "20260102T000000Z", b"y", keypair[1])
        os.replace(os.path.join(root, "acme", "acme-20260101T000000Z.manifest.json"),
                   os.path.join(root, "acme", "acme-20260102T000000Z.manifest.json"))
        os.unlink(a)
        spec = b
    elif case == "latest_without_repository":
        repo = None
    with pytest.raises(LifeboatError) as e:
        restore.find_artifact(repo, spec, "acme", fmt, "artifact")
    assert e.value.option == option, str(e.value)
    assert words in str(e.value)


def test_size_and_hash_are_checked_against_the_manifest(tmp_path, keypair):
    path = _write_artifact(str(tmp_path), "acme", "20260101T000000Z", os.urandom(5000), keypair[1])
    art = restore.find_artifact(str(tmp_path), "latest", "acme", "pgdump", "artifact")
    art.check_stored_size()
    sizes = pipeline.load(art.open(), io.BytesIO(), crypto.parse_identities(keypair[0], "t"), True)
    art.verify(sizes)
    with pytest.raises(LifeboatError) as e:
        art.verify(dict(sizes, sha256="0" * 64))
    assert "does not match its manifest" in str(e.value)
    with open(path, "ab") as f:
        f.write(b"!")
    with pytest.raises(LifeboatError) as e:
        art.check_stored_size()
    assert "extended" in str(e.value) and e.value.option == "artifact"


def test_wrong_identity_is_refused_before_anything_runs(tmp_path, keypair):
    _write_artifact(str(tmp_path), "acme", "20260101T000000Z", b"data", keypair[1])
    art = restore.find_artifact(str(tmp_path), "latest", "acme", "pgdump", "artifact")
    other, other_pub = crypto.generate_identity()
    req = restore.RestoreRequest({"tenant": "acme", "identity": other})
    with pytest.raises(LifeboatError) as e:
        restore.load_identities(req, [art])
    msg = str(e.value)
    assert "Wrong key" in msg and other_pub in msg and keypair[1] in msg and e.value.option == "identity"
    assert "AGE-SECRET-KEY" not in msg
    req = restore.RestoreRequest({"tenant": "acme", "identity": keypair[0]})
    assert len(restore.load_identities(req, [art])) == 1


# -- globals ---------------------------------------------------------------------------------------------

GLOBALS = """--
-- PostgreSQL database cluster dump
--

\\restrict abc

SET default_transaction_read_only = off;

CREATE ROLE app_ro;
ALTER ROLE app_ro WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:xx==$yy=:zz=';
CREATE ROLE "Mixed ""Case"" x";
ALTER ROLE "Mixed ""Case"" x" WITH NOLOGIN;
CREATE ROLE lbadmin;
ALTER ROLE lbadmin WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:secret';
COMMENT ON ROLE lbadmin IS 'the admin';
ALTER ROLE lbadmin SET work_mem TO '64MB';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER;
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
CREATE TABLESPACE "cold" OWNER postgres LOCATION '/srv/it''s cold';
GRANT app_ro TO lbadmin GRANTED BY postgres;

\\unrestrict abc
"""


def test_globals_create_missing_roles_and_leave_existing_ones():
    script, created, existing, missing = restore_pg.transform_globals(GLOBALS, {"lbadmin", "postgres"}, {"fast"})
    assert created == ["app_ro", 'Mixed "Case" x']
    assert existing == ["lbadmin", "postgres"]
    assert missing == [("cold", "/srv/it's cold")]
    assert "lbadmin WITH" not in script and "COMMENT ON ROLE lbadmin" not in script
    assert "ALTER ROLE lbadmin SET" not in script and "CREATE ROLE postgres" not in script
    assert "CREATE ROLE app_ro;" in script and 'ALTER ROLE "Mixed ""Case"" x" WITH NOLOGIN;' in script
    assert "CREATE TABLESPACE" not in script
    assert "GRANT app_ro TO lbadmin GRANTED BY postgres;" in script
    assert "\\restrict abc" in script and "\\unrestrict abc" in script


# -- messages --------------------------------------------------------------------------------------------


def test_first_errors_are_quoted_with_their_command_and_without_secrets():
    text = ("pg_restore: warning: something harmless\n"
            "pg_restore: error: could not execute query: ERROR:  role \"ghost\" does not exist\n"
            "Command was: GRANT SELECT ON TABLE public.t TO ghost;\n"
            "psql:<stdin>:12: ERROR:  syntax error at or near \"x\"\n"
            "LINE 1: ALTER ROLE a WITH PASSWORD 'SCRAM-SHA-256$4096:abc' x\n"
            "psql:<stdin>:13: ERROR:  bad PASSWORD 'md5" + "0" * 32 + "'\n"
            "psql: error: FATAL: too many\n")
    lines = restore_common.error_lines(text)
    assert len(lines) == 3
    assert lines[0].endswith("[Command was: GRANT SELECT ON TABLE public.t TO ghost;]")
    assert "syntax error" in lines[1]
    assert "md5000" not in lines[2] and "'***'" in lines[2]
    assert restore_common.error_lines("pg_restore: warning: errors ignored on restore: 0\n") == []
    assert "SCRAM-SHA-256$***" in restore_common.redact("x SCRAM-SHA-256$4096:abc=:def= y")
    assert "AGE-SECRET-KEY-***" in restore_common.redact("AGE-SECRET-KEY-1QQQ")


@pytest.mark.parametrize("expected,actual,problems", [
    ({"a": 1, "b": 2}, {"a": 1, "b": 2}, []),
    ({"a": 1}, {"a": 2}, ["a: 2 restored, 1 in the manifest"]),
    ({"a": 1}, {}, ["a: none restored, 1 in the manifest"]),
    ({}, {"z": 0}, ["z: 0 restored, absent in the manifest"]),
])
def test_row_count_comparison(expected, actual, problems):
    assert restore_common.compare_counts(expected, actual) == problems


# -- derived names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", [
    "a" * 63,
    "lb_r_" + "0" * 58,
    "acme",
    "t" + "0123456789" * 6 + "ab",
])
def test_derived_names_never_name_the_tenant(tenant):
    naming.validate_tenant(tenant)
    names = set()
    for kind in ("r", "s"):
        for nonce in range(50):
            name = naming.derived_name(kind, "127.0.0.1:5432", tenant, "artifact", nonce)
            assert name != tenant and not tenant.startswith(name) and len(name.encode()) <= 63
            assert restore._DERIVED.match(name)
            names.add(name)
    assert len(names) == 100


def test_a_private_folder_is_0700_and_always_removed(tmp_path):
    with pytest.raises(RuntimeError):
        with restore_common.PrivateDir(str(tmp_path)) as d:
            assert oct(os.stat(d.path).st_mode & 0o777) == "0o700"
            path, f = d.new_file("archive.pgdump")
            f.close()
            assert oct(os.stat(path).st_mode & 0o777) == "0o600"
            raise RuntimeError("boom")
    assert os.listdir(str(tmp_path)) == []
