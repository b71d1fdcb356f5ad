"""discover rules: validation (errors name the file and key), evaluation against a server's
catalog (pure), protection, and the protection metrics."""

import datetime
import textwrap

import pytest

from lifeboat_engine import agent_config, agent_metrics, discovery
from lifeboat_engine.agent_config import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def load(tmp_path, yml, env='TENANTS="acme"\n', dropins=None):
    cfg = write(tmp_path, "etc/lifeboat.yml", yml)
    for name, text in (dropins or {}).items():
        write(tmp_path, "etc/lifeboat.d/" + name, text)
    return agent_config.load(cfg, write(tmp_path, "etc/tenants.env", env))


# -- validation -------------------------------------------------------------------------

BAD_RULES = [
    # (discover value, key named, fragment of the message)
    ('{databases: "acme_*"}', "discover", "expected a list of rules"),
    ('["acme_*"]', "discover[0]", "got a string"),
    ("[{}]", "discover[0]", "empty mapping"),
    ('[{exclude: "x"}]', "discover[0]", "neither databases nor schemas"),
    ('[{databases: "acme_*", schemas: "t_*"}]', "discover[0].schemas", "Split it into two rules"),
    ('[{databases: "acme_*", database: saas}]', "discover[0].database", "does not go with databases"),
    ('[{schemas: "t_*"}]', "discover[0].database", "needs database"),
    ("[{database: saas}]", "discover[0].schemas", "needs schemas"),
    ('[{database: "saas_*", schemas: "t_*"}]', "discover[0].database", "not a pattern"),
    ('[{database: template1, schemas: "t_*"}]', "discover[0].database", "never holds tenants"),
    ('[{database: lb_v_0123456789abcdef0123, schemas: "t_*"}]', "discover[0].database", "never holds tenants"),
    ("[{databases: 42}]", "discover[0].databases", "got a number"),
    ('[{databases: ""}]', "discover[0].databases", "non-empty string"),
    ('[{databases: " acme*"}]', "discover[0].databases", "spaces around"),
    ('[{databases: "acme_[0-9"}]', "discover[0].databases", "not closed"),
    ("[{databases: postgres}]", "discover[0].databases", "never discovered"),
    ("[{databases: template0}]", "discover[0].databases", "never discovered"),
    ("[{databases: lb_s_0123456789abcdef0123}]", "discover[0].databases", "never discovered"),
    ("[{databases: %s}]" % ("a" * 64), "discover[0].databases", "at most 63 bytes"),
    ("[{database: saas, schemas: public}]", "discover[0].schemas", "shared part"),
    ("[{database: saas, schemas: pg_catalog}]", "discover[0].schemas", "system schema"),
    ("[{database: saas, schemas: information_schema}]", "discover[0].schemas", "system schema"),
    ('[{databases: "a*", exclude: []}]', "discover[0].exclude", "a pattern or a list"),
    ('[{databases: "a*", exclude: ["ok", "b[x"]}]', "discover[0].exclude[1]", "not closed"),
    ('[{databases: "a*", rpo: soon}]', "discover[0].rpo", "duration"),
    ('[{databases: "a*", rpo: 0}]', "discover[0].rpo", "duration"),
    ('[{databases: "a*", rpo: null}]', "discover[0].rpo", "has no value"),
    ('[{databases: "a*", schema: x}]', "discover[0].schema", "unknown key"),
    ('[{databases: "a*"}, {database: saas}]', "discover[1].schemas", "needs schemas"),
]


@pytest.mark.parametrize("value, key, fragment", BAD_RULES)
def test_a_bad_rule_is_refused_naming_the_file_and_key(tmp_path, value, key, fragment):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "repository: /r\ndiscover: %s\n" % value)
    assert e.value.key == key, e.value.msg
    assert e.value.msg.startswith("lifeboat.yml: %s: " % key), e.value.msg
    assert fragment in e.value.msg, e.value.msg


def test_a_bad_rule_in_a_drop_in_names_the_drop_in(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "repository: /r\n", dropins={"20-saas.yml": "discover: [{database: saas}]\n"})
    assert e.value.msg.startswith("lifeboat.d/20-saas.yml: discover[0].schemas: "), e.value.msg


def test_rules_are_normalized_and_add_up_across_drop_ins(tmp_path):
    cfg = load(tmp_path, 'repository: /r\ndiscover: [{databases: "acme_*", exclude: acme_demo}]\n',
               dropins={"20-saas.yml": 'discover:\n  - {database: saas, schemas: "t_*", rpo: 2d}\n'})
    rules = cfg["discover"]
    assert [(r["kind"], r["pattern"], r["database"], r["exclude"], r["rpo"]) for r in rules] == [
        ("databases", "acme_*", None, ["acme_demo"], None), ("schemas", "t_*", "saas", [], 172800)]
    assert rules[0]["origin"] == "lifeboat.yml: discover[0]"
    assert rules[1]["origin"] == "lifeboat.d/20-saas.yml: discover[0]"


def test_no_discover_key_means_no_discovery_and_an_empty_list_means_report_only(tmp_path):
    assert load(tmp_path, "repository: /r\n")["discover"] is None
    assert load(tmp_path, "repository: /r\ndiscover: []\n")["discover"] == []
    found = discovery.tenants_for_run(load(tmp_path, "repository: /r\n"))
    assert not found.configured and found.names == ["acme"] and found.ok


# -- evaluation --------------------------------------------------------------------------

def db(name, template=False, allowconn=True):
    return {"name": name, "template": template, "allowconn": allowconn}


SERVER = {
    "server": "127.0.0.1:5432",
    "databases": [db("postgres"), db("template0", True, False), db("template1", True), db("acme_one"),
                  db("acme_two"), db("acme_frozen", allowconn=False), db("acme_tmpl", template=True),
                  db("lb_v_0123456789abcdef0123"), db("Acme_Upper"), db("grafana"), db("saas"), db("saas2"),
                  db("acme_demo")],
    "schemas": {"saas": ["t_a", "t_b", "T_Bad", "lb_k_0123456789abcdef0123", "reporting", "t_old"],
                "saas2": ["t_a", "t_c"]},
    "errors": {},
}


def rules(*items):
    return discovery.check_rules(list(items))


def listed(name, database=None, schema=None, engine="postgresql", path=None):
    return {"name": name, "engine": engine, "database": database or (name if engine == "postgresql" else None),
            "schema": schema, "path": path, "found": "listed", "rpo": 3600, "covers": engine == "postgresql"}


def by_reason(result):
    out = {}
    for p in result["problems"]:
        out.setdefault(p["reason"], []).append((p["database"], p["schema"]))
    return out


def test_database_rule_never_matches_system_template_derived_or_closed_databases():
    result = discovery.evaluate(rules({"databases": "*", "exclude": ["grafana", "saas*"]}), [], SERVER)
    names = [t["name"] for t in result["discovered"]]
    assert names == ["acme_demo", "acme_one", "acme_two"]
    for never in ("postgres", "template0", "template1", "acme_tmpl", "acme_frozen", "lb_v_0123456789abcdef0123"):
        assert never not in str(result["problems"]) and never not in names
    assert by_reason(result) == {"invalid-name": [("Acme_Upper", None)]}
    assert result["excluded"] == ["database grafana", "database saas", "database saas2"]


def test_patterns_are_case_sensitive_globs():
    result = discovery.evaluate(rules({"databases": "acme_[ot]*"}, {"databases": "ACME*"}), [], SERVER)
    assert [t["name"] for t in result["discovered"]] == ["acme_one", "acme_two"]
    assert ("Acme_Upper", None) in by_reason(result)["not-covered"]


def test_schema_rules_find_schema_tenants_and_report_what_they_do_not_cover():
    result = discovery.evaluate(rules({"databases": "acme_*"}, {"database": "saas", "schemas": "[tT]_*",
                                                                "exclude": "t_old"}), [listed("acme_demo")], SERVER)
    discovered = dict((t["name"], t) for t in result["discovered"])
    assert sorted(discovered) == ["acme_one", "acme_two", "t_a", "t_b"]
    assert discovered["t_a"] == {"name": "t_a", "engine": "postgresql", "database": "saas", "schema": "t_a",
                                 "found": "discovered", "rule": "discover[1]", "rpo": None}
    reasons = by_reason(result)
    assert reasons["invalid-name"] == [("saas", "T_Bad")], "a capital: reported, not backed up"
    # saas holds schema tenants: covered, never a database tenant; its other schemas are reported
    assert ("saas", None) not in sum(reasons.values(), []) and ("saas", "reporting") in reasons["not-covered"]
    assert ("grafana", None) in reasons["not-covered"] and ("saas2", None) in reasons["not-covered"]
    assert "lb_k_" not in str(result) and ("saas", "t_old") not in sum(reasons.values(), [])
    assert result["excluded"] == ["database saas, schema t_old"]
    msg = [p for p in result["problems"] if p["schema"] == "T_Bad"][0]["message"]
    assert "not a valid tenant name" in msg and "TENANTS" in msg and "discover[1].exclude" in msg


def test_the_same_name_found_twice_is_a_conflict_and_neither_is_backed_up():
    result = discovery.evaluate(rules({"database": "saas", "schemas": "t_[ab]"}, {"database": "saas2", "schemas": "*"}),
                                [], SERVER)
    assert sorted(t["name"] for t in result["discovered"]) == ["t_b", "t_c"]
    conflicts = by_reason(result)["conflict"]
    assert sorted(conflicts) == [("saas", "t_a"), ("saas2", "t_a")]
    msg = [p for p in result["problems"] if p["reason"] == "conflict"][0]["message"]
    assert "neither is backed up" in msg and "saas" in msg and "saas2" in msg


def test_a_listed_tenant_wins_and_covers_its_target():
    # listed t_a is saas.t_a: it covers that schema; saas2.t_a would be tenant t_a too: reported, not backed up
    result = discovery.evaluate(rules({"database": "saas", "schemas": "t_*"}, {"database": "saas2", "schemas": "t_*"}),
                                [listed("t_a", "saas", "t_a"), listed("grafana")], SERVER)
    assert sorted(t["name"] for t in result["discovered"]) == ["t_b", "t_c", "t_old"]
    reasons = by_reason(result)
    assert reasons["conflict"] == [("saas2", "t_a")]
    assert ("grafana", None) not in reasons.get("not-covered", [])
    msg = [p for p in result["problems"] if p["reason"] == "conflict"][0]["message"]
    assert "already listed in TENANTS for database saas, schema t_a" in msg and "listed tenant wins" in msg


def test_a_schema_rule_whose_database_is_missing_is_a_discovery_error():
    result = discovery.evaluate(rules({"database": "nope", "schemas": "*"}),
                                [], dict(SERVER, errors={"nope": "it does not exist on 127.0.0.1:5432"}))
    assert result["errors"] and "nope" in result["errors"][0] and "discover[0]" in result["errors"][0]


def test_a_listed_tenant_on_another_server_covers_nothing_here():
    other = dict(listed("grafana"), covers=False)
    result = discovery.evaluate(rules({"databases": "acme_*"}), [other], SERVER)
    assert ("grafana", None) in by_reason(result)["not-covered"]


# -- protection ----------------------------------------------------------------------------

NOW = datetime.datetime(2026, 1, 2, 3, 0, 0, tzinfo=datetime.timezone.utc)


def test_protection_reasons():
    found = discovery.Found([listed("acme"), listed("late_one"), listed("fresh")],
                            [{"name": "t_a", "engine": "postgresql", "database": "saas", "schema": "t_a",
                              "found": "discovered", "rule": "discover[0]", "rpo": 7200}],
                            [{"tenant": "grafana", "database": "grafana", "schema": None, "found": "none",
                              "reason": "not-covered", "rule": None, "message": "m"}], configured=True)
    stamps = {"late_one": "20260101T000000Z", "t_a": "20260102T020000Z"}
    entries = discovery.protection(found, lambda n: (stamps.get(n), None), NOW, fresh={"fresh"})
    by = dict((e["tenant"], e) for e in entries)
    assert by["acme"]["reason"] == "no-artifact" and by["acme"]["unprotected"]
    assert "lifeboat backup --tenant acme" in by["acme"]["message"]
    assert by["late_one"]["reason"] == "late" and "older than its RPO" in by["late_one"]["message"]
    assert by["t_a"]["reason"] == "none" and not by["t_a"]["unprotected"]
    assert by["fresh"]["reason"] == "none" and not by["fresh"]["unprotected"]
    assert by["grafana"]["unprotected"]
    assert sorted(e["tenant"] for e in discovery.unprotected(entries)) == ["acme", "grafana", "late_one"]


def test_protection_metrics():
    entries = [
        {"tenant": "acme", "found": "listed", "database": "acme", "schema": None, "reason": "none",
         "unprotected": False},
        {"tenant": "Bad-Name", "found": "discovered", "database": "Bad-Name", "schema": None,
         "reason": "invalid-name", "unprotected": True},
        {"tenant": "t_a", "found": "discovered", "database": "saas", "schema": "t_a", "reason": "conflict",
         "unprotected": True},
        {"tenant": "t_a", "found": "discovered", "database": "saas2", "schema": "t_a", "reason": "conflict",
         "unprotected": True},
    ]
    text = agent_metrics.render_protection(entries, {"finished": 1700000000, "operation": "backup",
                                                     "discovery": {"ok": False, "discovered": 2}})
    assert ('lifeboat_tenant_unprotected{tenant="acme",found="listed",database="acme",schema="",reason="none"} 0'
            in text)
    assert ('lifeboat_tenant_unprotected{tenant="Bad-Name",found="discovered",database="Bad-Name",schema="",'
            'reason="invalid-name"} 1' in text)
    assert text.count('lifeboat_tenant_unprotected{tenant="t_a"') == 2, "one series per database and schema"
    assert "lifeboat_unprotected_tenants 3\n" in text
    assert "lifeboat_discovery_status 0\n" in text and "lifeboat_discovered_tenants 2\n" in text
    no_rules = agent_metrics.render_protection(entries[:1], {"finished": 1, "operation": "backup", "discovery": None})
    assert "lifeboat_discovery_status" not in no_rules and "lifeboat_unprotected_tenants 0\n" in no_rules
