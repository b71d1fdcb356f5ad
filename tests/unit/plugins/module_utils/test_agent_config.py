"""The agent's configuration: tenants.env and lifeboat.yml, errors naming the key."""

import textwrap

import pytest

from lifeboat_engine import agent_config
from lifeboat_engine.agent_config import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def load(tmp_path, yml="repository: /var/backups/lifeboat\n", env='TENANTS="acme globex"\n', dropins=None):
    cfg = write(tmp_path, "etc/lifeboat.yml", yml) if yml is not None else str(tmp_path / "etc/lifeboat.yml")
    for name, text in (dropins or {}).items():
        write(tmp_path, "etc/lifeboat.d/" + name, text)
    tenv = write(tmp_path, "etc/tenants.env", env) if env is not None else str(tmp_path / "etc/tenants.env")
    return agent_config.load(cfg, tenv)


# -- tenants.env ----------------------------------------------------------------------

@pytest.mark.parametrize("text, tenants, pii", [
    ('TENANTS="acme globex"\n', ["acme", "globex"], None),
    ("TENANTS='acme'\nPII_DAYS=45\n", ["acme"], 45),
    ("# comment\n\nexport TENANTS=acme\n", ["acme"], None),
    ('TENANTS="acme  acme globex"\n', ["acme", "globex"], None),
    ('TENANTS=""\nPGSSLMODE=require\n', [], None),
    ('TENANTS="a b"\nPII_DAYS=""\n', ["a", "b"], None),
])
def test_tenants_env_is_read_like_systemd_reads_it(tmp_path, text, tenants, pii):
    path = write(tmp_path, "tenants.env", text)
    env = agent_config.load_tenants_env(path)
    assert env["tenants"] == tenants and env["pii_days"] == pii and env["exists"]


@pytest.mark.parametrize("text, key, fragment", [
    ('TENANTS="acme Bad"\n', "TENANTS", "'Bad'"),
    ('TENANTS="acme lb_x_0123456789abcdef0123"\n', "TENANTS", "reserved"),
    ("PII_DAYS=ten\n", "PII_DAYS", "whole number"),
    ("PII_DAYS=99999\n", "PII_DAYS", "whole number"),
    ('TENANTS="acme\n', "TENANTS", "not closed"),
    ("this is not an assignment\n", "line 1", "KEY=value"),
])
def test_tenants_env_errors_name_the_key(tmp_path, text, key, fragment):
    path = write(tmp_path, "tenants.env", text)
    with pytest.raises(ConfigError) as e:
        agent_config.load_tenants_env(path)
    assert e.value.key == key and fragment in e.value.msg
    assert e.value.msg.startswith("tenants.env: %s: " % key)


def test_a_missing_tenants_env_means_no_tenants(tmp_path):
    env = agent_config.load_tenants_env(str(tmp_path / "nope.env"))
    assert env == {"tenants": [], "pii_days": None, "path": str(tmp_path / "nope.env"), "exists": False}


# -- lifeboat.yml -----------------------------------------------------------------------

def test_defaults_and_tenant_settings(tmp_path):
    cfg = load(tmp_path, """
        repository: s3://bucket/prefix
        recipients: [age1abc]
        connection: {login_unix_socket: /run/postgresql, login_port: 5433}
        tenants:
          globex: {database: saas, schema: globex}
          initech: {engine: sqlite, path: /srv/initech.db, rpo: 2d}
    """, 'TENANTS="acme globex initech"\n')
    assert cfg.tenants == ["acme", "globex", "initech"]
    assert cfg["parallel"] == 2 and cfg["rpo"] == 26 * 3600 and cfg["lock_wait"] == 0
    assert cfg["retention"] == {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 0}
    assert cfg.tenant("acme") == {"engine": "postgresql", "database": "acme", "rpo": 93600,
                                  "connection": {"login_unix_socket": "/run/postgresql", "login_port": 5433}}
    assert cfg.tenant("globex")["schema"] == "globex" and cfg.tenant("globex")["database"] == "saas"
    assert cfg.tenant("initech")["rpo"] == 172800 and "database" not in cfg.tenant("initech")


def test_a_tenants_own_recipients_replace_the_top_level_ones_or_are_added(tmp_path):
    """crypto.tenant_recipient_params as the agent's backup applies it (_agent/operations.tenant_recipients)."""
    from lifeboat_engine import crypto
    from lifeboat_engine._agent.operations import tenant_recipients
    own, other = crypto.generate_identity()[1], crypto.generate_identity()[1]
    shared = crypto.generate_identity()[1]
    cfg = load(tmp_path, """
        repository: /var/backups/lifeboat
        recipients: [%s]
        tenants:
          acme: {recipients: [%s]}
          globex: {recipients: [%s], recipients_mode: add}
          initech: {recipients_file: /etc/lifeboat/initech.pub}
    """ % (shared, own, other), 'TENANTS="acme globex initech umbrella"\n')
    common = {"recipients": [shared], "recipients_file": "/etc/lifeboat/recipients.txt"}
    assert tenant_recipients(cfg, common, "acme") == {"recipients": [own]}  # replaces both top-level keys
    assert tenant_recipients(cfg, {"recipients": [shared]}, "globex") == {"recipients": [shared, other]}
    assert tenant_recipients(cfg, common, "initech") == {"recipients_file": "/etc/lifeboat/initech.pub"}
    assert tenant_recipients(cfg, common, "umbrella") is None  # the top-level ones


@pytest.mark.parametrize("yml, key, fragment", [
    ("repositry: /x\n", "repositry", "unknown key"),
    ("repository: relative/path\n", "repository", "neither an absolute folder"),
    ("repository: s3://\n", "repository", "not an S3 location"),
    ("parallel: 0\n", "parallel", "from 1 to 32"),
    ("parallel: true\n", "parallel", "from 1 to 32"),
    ("rpo: soon\n", "rpo", "duration"),
    ("recipients: 5\n", "recipients", "list of strings"),
    ("retention: {daily: -1}\n", "retention.daily", "from 0 to 3660"),
    ("retention: {hourly: 3}\n", "retention.hourly", "unknown key"),
    ("connection: {login_port: 70000}\n", "connection.login_port", "from 1 to 65535"),
    ("connection: {login_password: x}\n", "connection.login_password", "unknown key"),
    ("tenants: {acme: {engine: mysql}}\n", "tenants.acme.engine", "not one of postgresql, sqlite"),
    ("tenants: {acme: {engin: sqlite}}\n", "tenants.acme.engin", "unknown key"),
    ("tenants: {Acme: {}}\n", "tenants.Acme", "tenant name"),
    ("tenants: {acme: {engine: sqlite}}\n", "tenants.acme.path", "needs path"),
    ("tenants: {acme: {engine: sqlite, path: /x.db, schema: s}}\n", "tenants.acme.schema", "not sqlite"),
    ("tenants: {acme: {path: /x.db}}\n", "tenants.acme.path", "applies to engine sqlite"),
    ("tenants: {acme: {database: " + "d" * 64 + "}}\n", "tenants.acme.database", "63 bytes"),
    ("tenants: {acme: {schema: null}}\n", "tenants.acme.schema", "has no value"),
    ("tenants: [acme]\n", "tenants", "mapping of tenant name"),
    ("alert: {webhook_url: ftp://x}\n", "alert.webhook_url", "http"),
    ("alert: {command: []}\n", "alert.command", "empty"),
    ("anonymize: {rules: []}\n", "anonymize.rules", "non-empty list"),
    ("anonymize: {tenant_rules: {acme: [x]}}\n", "anonymize.tenant_rules.acme[0]", "mapping"),
    ("verify: {tenants: [ok, NOT]}\n", "verify.tenants[1]", "tenant name"),
    ("metrics_dir: relative\n", "metrics_dir", "absolute path"),
    ("tenants: {acme: {recipients_mode: add}}\n", "tenants.acme.recipients_mode", "own recipients"),
    ("tenants: {acme: {recipients: [age1x], recipients_mode: both}}\n", "tenants.acme.recipients_mode", "not one of"),
    ("tenants: {acme: {recipients_file: keys/acme.pub}}\n", "tenants.acme.recipients_file", "absolute path"),
])
def test_errors_name_the_file_and_the_key(tmp_path, yml, key, fragment):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, yml)
    assert e.value.key == key, e.value.msg
    assert e.value.msg.startswith("lifeboat.yml: %s: " % key), e.value.msg
    assert fragment in e.value.msg


def test_yaml_syntax_errors_say_where(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "repository: /x\ntenants: {acme: [\n")
    assert "lifeboat.yml" in e.value.msg and "line 3" in e.value.msg


def test_a_document_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "- a\n- b\n")
    assert "must be a mapping" in e.value.msg


def test_nullable_keys(tmp_path):
    cfg = load(tmp_path, "repository: /r\nmetrics_dir: null\nglobals: null\nskip_if_newer_than: 20h\n")
    assert cfg["metrics_dir"] is None and cfg["globals"] is None and cfg["skip_if_newer_than"] == 72000


def test_a_missing_file_is_an_error_unless_drop_ins_exist(tmp_path):
    with pytest.raises(Exception) as e:
        load(tmp_path, None)
    assert "does not exist" in str(e.value)
    cfg = load(tmp_path, None, dropins={"60-verify.yml": "verify: {repository: s3://bucket/x}\n"})
    assert cfg["verify"]["repository"] == "s3://bucket/x"


def test_drop_ins_merge_key_by_key_in_name_order(tmp_path):
    cfg = load(tmp_path, """
        repository: /r
        connection: {login_port: 5432, login_user: postgres}
        tenants: {initech: {engine: sqlite, path: /srv/initech.db}}
    """, dropins={
        "50-anonymize.yml": "anonymize: {rules: [{table: t}]}\ntenants: {initech: {anonymize: true}}\n",
        "00-agent.yml": "user: postgres\nconnection: {login_port: 5433}\nmetrics_dir: /m\n",
        "ignored.txt": "not: read\n",
    })
    assert cfg["user"] == "postgres" and cfg["metrics_dir"] == "/m"
    assert cfg["connection"] == {"login_port": 5433, "login_user": "postgres"}
    assert cfg["tenants"]["initech"] == {"engine": "sqlite", "path": "/srv/initech.db", "anonymize": True}
    assert [p.rsplit("/", 1)[1] for p in cfg.files] == ["lifeboat.yml", "00-agent.yml", "50-anonymize.yml"]


def test_a_drop_in_error_names_the_drop_in(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "repository: /r\n", dropins={"60-verify.yml": "verify: {paralel: 2}\n"})
    assert e.value.msg.startswith("lifeboat.d/60-verify.yml: verify.paralel: unknown key")


def test_merged_tenant_settings_are_checked_together(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "tenants: {acme: {engine: sqlite, path: /a.db}}\n",
             dropins={"10-x.yml": "tenants: {acme: {database: x}}\n"})
    assert "tenants.acme.database" in e.value.msg and "lifeboat.yml + 10-x.yml" in e.value.msg


def test_command_strings_are_split_without_a_shell():
    assert agent_config.command("notify-send 'backup failed'", "f", "alert.command") == ["notify-send", "backup failed"]
    assert agent_config.command(["a", "b c"], "f", "alert.command") == ["a", "b c"]


def test_require_names_the_missing_key(tmp_path):
    cfg = load(tmp_path, "parallel: 3\n")
    with pytest.raises(ConfigError) as e:
        cfg.require("repository", "to back up")
    assert e.value.key == "repository" and "is required to back up" in e.value.msg
