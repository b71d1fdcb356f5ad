# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host agent's configuration: ``/etc/lifeboat/tenants.env`` and
``/etc/lifeboat/lifeboat.yml`` (plus drop-ins in ``/etc/lifeboat/lifeboat.d/``).

Everything is validated before anything runs, and every error names the file
and the key (``lifeboat.yml: tenants.acme.engine: ...``) and says what to put
there. Unknown keys are errors too: a typo must not silently turn a setting
off.

``tenants.env`` is the file systemd units also read (``EnvironmentFile=``):
``TENANTS="tenant_a tenant_b"`` and optional ``PII_DAYS``; other variables
are left to the environment of the units and ignored here.

``lifeboat.yml`` is read first, then ``lifeboat.d/*.yml`` in name order, each
merged into the result (mappings key by key, anything else replaced), so that
one role can own the backup settings and another its anonymize or verify
section without rewriting each other's file. ``discover`` rules (see
discovery.py) are the exception: the rules of all files add up.
"""

import os
import re
import shlex

from . import discovery, naming
from ._s3.options import S3_OPTIONS, agent_key
from .errors import LifeboatError, MissingDependency

try:
    import yaml

    YAML_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the interpreter
    yaml = None
    YAML_IMPORT_ERROR = str(_e)

CONFIG_DIR = "/etc/lifeboat"
CONFIG_FILE = CONFIG_DIR + "/lifeboat.yml"
TENANTS_ENV = CONFIG_DIR + "/tenants.env"
DROPIN_DIR = CONFIG_DIR + "/lifeboat.d"
STATE_DIR = "/var/lib/lifeboat"
MAX_FILE = 1 << 20


class ConfigError(LifeboatError):
    """A configuration problem; ``option`` is the key path (``tenants.acme.engine``)."""

    def __init__(self, where, key, msg):
        text = "%s: %s: %s" % (where, key, msg) if key else "%s: %s" % (where, msg)
        super(ConfigError, self).__init__(text, option=key or None)
        self.where = where
        self.key = key


# -- value checkers ---------------------------------------------------------------
# Each takes (value, where, key) and returns the normalized value or raises.

def _type_name(value):
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def string(value, where, key):
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(where, key, "expected a non-empty string, got %s." % _type_name(value))
    return value


def abs_path(value, where, key):
    value = string(value, where, key)
    if not value.startswith("/"):
        raise ConfigError(where, key, "expected an absolute path (starting with /), got %r." % value)
    return value


def repository(value, where, key):
    value = string(value, where, key)
    if value.startswith("s3://"):
        if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", value):
            raise ConfigError(where, key, "%r is not an S3 location: use s3://bucket/prefix." % value)
        return value
    if "://" in value or not value.startswith("/"):
        raise ConfigError(where, key, "%r is neither an absolute folder nor s3://bucket/prefix." % value)
    return value


def boolean(value, where, key):
    if not isinstance(value, bool):
        raise ConfigError(where, key, "expected true or false, got %s." % _type_name(value))
    return value


def integer(low, high):
    def check(value, where, key):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(where, key, "expected a whole number from %d to %d, got %r." % (low, high, value))
        return value
    return check


def duration(value, where, key):
    try:
        seconds = naming.parse_duration(value, key)
    except LifeboatError:
        seconds = None
    if seconds is None:
        raise ConfigError(where, key, "expected a duration such as 3600, 30m, 26h or 2d, got %r." % (value,))
    return seconds


def optional_duration(value, where, key):
    return None if value is None else duration(value, where, key)


def string_list(value, where, key):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(where, key, "expected a list of strings, got %s." % _type_name(value))
    return [string(v, where, "%s[%d]" % (key, i)) for i, v in enumerate(value)]


def command(value, where, key):
    """A command as a list of arguments (a string is split like a shell would, without a shell)."""
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as e:
            raise ConfigError(where, key, "cannot split the command: %s." % e)
    value = string_list(value, where, key)
    if not value:
        raise ConfigError(where, key, "the command is empty.")
    return value


def one_of(*choices):
    def check(value, where, key):
        if value not in choices:
            raise ConfigError(where, key, "%r is not one of %s." % (value, ", ".join(choices)))
        return value
    return check


def pg_name(value, where, key):
    value = string(value, where, key)
    if len(value.encode("utf-8")) > 63:
        raise ConfigError(where, key, "a PostgreSQL name has at most 63 bytes; %r is longer." % value)
    return value


def url(value, where, key):
    value = string(value, where, key)
    if not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(where, key, "expected an http:// or https:// URL.")
    return value


def anything(value, where, key):
    return value


def mapping(schema, name="section"):
    def check(value, where, key):
        return check_mapping(value, schema, where, key)
    return check


def check_mapping(value, schema, where, prefix):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(where, prefix, "expected a mapping (key: value lines), got %s." % _type_name(value))
    out = {}
    for key, item in value.items():
        path = "%s.%s" % (prefix, key) if prefix else str(key)
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(where, path, "unknown key. Known keys here: %s." % known)
        if item is None and key not in NULLABLE:
            raise ConfigError(where, path, "has no value; remove the key or give one.")
        out[key] = schema[key](item, where, path) if item is not None else None
    return out


NULLABLE = ("metrics_dir", "skip_if_newer_than", "globals", "user")

CONNECTION = {
    "login_host": string,
    "login_port": integer(1, 65535),
    "login_user": string,
    "login_password_file": abs_path,
    "login_unix_socket": abs_path,
    "pg_bin_dir": abs_path,
}

# The engines' S3 options by the agent's names (endpoint_url for s3_endpoint_url: _s3/options.py), and the file
# that holds the secret key.
S3 = dict([(agent_key(option), string) for option in S3_OPTIONS], endpoint_url=url, secret_key_file=abs_path)

RETENTION = {
    "daily": integer(0, 3660),
    "weekly": integer(0, 520),
    "monthly": integer(0, 1200),
    "yearly": integer(0, 100),
}


def anonymize_rules(value, where, key):
    if not isinstance(value, list) or not value:
        raise ConfigError(where, key, "expected a non-empty list of rules (table, timestamp, key, columns).")
    for i, rule in enumerate(value):
        if not isinstance(rule, dict):
            raise ConfigError(where, "%s[%d]" % (key, i), "expected a mapping (table, timestamp, key, columns).")
    return value  # the anonymize engine checks each rule and names its place


def discover_rules(value, where, key):
    """``discover``: rules that find tenants on the server (see discovery.py)."""
    try:
        return discovery.check_rules(value, key, where)
    except discovery.RuleError as e:
        raise ConfigError(where, e.key, e.text)


TENANT = {
    "engine": one_of(*naming.ENGINES),
    "database": pg_name,
    "schema": pg_name,
    "path": abs_path,
    "connection": mapping(CONNECTION),
    "rpo": duration,
    "anonymize_rules": anonymize_rules,
    "anonymize": boolean,
    "verify": boolean,
    # The tenant's own age recipients: they replace the top-level ones for its artifacts (recipients_mode: replace,
    # the default, so that destroying its keys erases it), or are added to them (add); crypto.tenant_recipient_params.
    "recipients": string_list,
    "recipients_file": abs_path,
    "recipients_mode": one_of("replace", "add"),
}


def tenants(value, where, key):
    if not isinstance(value, dict):
        raise ConfigError(where, key, "expected a mapping of tenant name to its settings, got %s." % _type_name(value))
    out = {}
    for name, settings in value.items():
        path = "%s.%s" % (key, name)
        try:
            naming.validate_tenant(name)
        except LifeboatError as e:
            raise ConfigError(where, path, e.msg)
        item = check_mapping(settings, TENANT, where, path)
        engine = item.get("engine", "postgresql")
        if engine == "sqlite" and "path" not in item:
            raise ConfigError(where, path + ".path", "engine sqlite needs path: the tenant's SQLite file.")
        if engine == "sqlite" and ("database" in item or "schema" in item):
            raise ConfigError(where, path + (".database" if "database" in item else ".schema"),
                              "applies to engine postgresql, not sqlite; remove it.")
        if engine == "postgresql" and "path" in item:
            raise ConfigError(where, path + ".path", "applies to engine sqlite; for PostgreSQL use database (and schema).")
        if "recipients_mode" in item and not item.get("recipients") and not item.get("recipients_file"):
            raise ConfigError(where, path + ".recipients_mode", "applies to the tenant's own recipients: give "
                              "recipients or recipients_file too, or remove it.")
        out[name] = item
    return out


def tenant_list(value, where, key):
    value = string_list(value, where, key)
    for i, name in enumerate(value):
        try:
            naming.validate_tenant(name)
        except LifeboatError as e:
            raise ConfigError(where, "%s[%d]" % (key, i), e.msg)
    return value


def tenant_rules(value, where, key):
    if not isinstance(value, dict):
        raise ConfigError(where, key, "expected a mapping of tenant name to its list of rules, got %s." % _type_name(value))
    out = {}
    for name, rules in value.items():
        try:
            naming.validate_tenant(name)
        except LifeboatError as e:
            raise ConfigError(where, "%s.%s" % (key, name), e.msg)
        out[name] = anonymize_rules(rules, where, "%s.%s" % (key, name))
    return out


ANONYMIZE = {
    "rules": anonymize_rules,
    "tenant_rules": tenant_rules,
    "older_than_days": integer(0, 36500),
    "hmac_secret_file": abs_path,
    "batch_size": integer(1, 100000),
    "lock_timeout": integer(0, 86400),
    "retention_days": integer(0, 36500),
}

VERIFY = {
    "repository": repository,
    "tenants": tenant_list,
    "connection": mapping(CONNECTION),
    "identity_credential": string,
    "identity_file": abs_path,
    "identity_dir": abs_path,  # a key folder of one identity file per tenant, <tenant>.key (crypto.tenant_key_paths)
    "parallel": integer(1, 32),
    "artifact": string,
    "options": anything,
    "budget": duration,
}
VERIFY_BUDGET = 8 * 86400  # verify.budget: a weekly verification, a day late at most

PRUNE = {
    "options": anything,
}

ALERT = {
    "command": command,
    "webhook_url": url,
    "timeout": duration,
    "journal_lines": integer(0, 1000),
}

TOP = {
    "user": string,
    "repository": repository,
    "s3": mapping(S3),
    "recipients": string_list,
    "recipients_file": abs_path,
    "allow_unencrypted": boolean,
    "connection": mapping(CONNECTION),
    "parallel": integer(1, 32),
    "globals": boolean,
    "compression_level": integer(1, 19),
    "skip_if_newer_than": optional_duration,
    "lock_file": abs_path,
    "lock_wait": duration,
    "state_dir": abs_path,
    "metrics_dir": abs_path,
    "rpo": duration,
    "retention": mapping(RETENTION),
    "tmp_dir": abs_path,
    "tenants": tenants,
    "discover": discover_rules,
    "anonymize": mapping(ANONYMIZE),
    "verify": mapping(VERIFY),
    "prune": mapping(PRUNE),
    "alert": mapping(ALERT),
}

DEFAULTS = {
    "user": None,
    "parallel": 2,
    "globals": None,           # None: back up the globals when any tenant is on PostgreSQL
    "compression_level": 1,
    "skip_if_newer_than": None,
    "lock_file": STATE_DIR + "/agent.lock",
    "lock_wait": 0,
    "state_dir": STATE_DIR,
    "metrics_dir": "/var/lib/prometheus/node-exporter",
    "rpo": 26 * 3600,
    "retention": {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 0},
    "allow_unencrypted": False,
    "connection": {},
    "s3": {},
    "tenants": {},
    "discover": None,          # None: no discovery; [] : no rules, but what TENANTS does not cover is reported
    "anonymize": {},
    "verify": {},
    "prune": {},
    "alert": {},
}


# -- files ------------------------------------------------------------------------

def _read(path, what):
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read(MAX_FILE + 1)
    except OSError as e:
        raise LifeboatError("Cannot read %s %s: %s." % (what, path, e.strerror), option=what)
    except UnicodeDecodeError:
        raise LifeboatError("%s is not UTF-8 text." % path, option=what)
    if len(text) > MAX_FILE:
        raise LifeboatError("%s is larger than 1 MiB; is it the right file?" % path, option=what)
    return text


def parse_yaml(text, where):
    if yaml is None:
        raise MissingDependency("yaml", "PyYAML", YAML_IMPORT_ERROR)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(where, None, "is not valid YAML%s: %s." % (at, problem))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(where, None, "must be a mapping of settings (key: value), not %s." % _type_name(data))
    return data


def check_document(data, where):
    """Validate one configuration document (a file, or a drop-in)."""
    return check_mapping(data, TOP, where, "")


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_env(text, where):
    """KEY=value lines as systemd's EnvironmentFile= reads them (quotes, comments)."""
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise ConfigError(where, "line %d" % number, "expected KEY=value (for example TENANTS=\"acme globex\").")
        key, raw = m.group(1), m.group(2)
        if raw[:1] in ("'", '"'):
            quote = raw[0]
            if len(raw) < 2 or raw[-1] != quote:
                raise ConfigError(where, key, "the value's quote %s is not closed (line %d)." % (quote, number))
            raw = raw[1:-1]
            if quote == '"':
                raw = re.sub(r'\\(["\\$`])', r"\1", raw)
        out[key] = raw
    return out


def load_tenants_env(path, environ=None):
    """TENANTS (a list, in order, duplicates dropped) and PII_DAYS (int or None)."""
    where = os.path.basename(path)
    if not os.path.exists(path):
        return {"tenants": [], "pii_days": None, "path": path, "exists": False}
    values = parse_env(_read(path, "tenants_env"), where)
    names = []
    for name in values.get("TENANTS", "").split():
        try:
            naming.validate_tenant(name, "TENANTS")
        except LifeboatError as e:
            raise ConfigError(where, "TENANTS", e.msg.replace("Invalid TENANTS", "invalid tenant"))
        if name not in names:
            names.append(name)
    pii = values.get("PII_DAYS", "").strip()
    pii_days = None
    if pii:
        if not re.match(r"^[0-9]{1,5}$", pii) or int(pii) > 36500:
            raise ConfigError(where, "PII_DAYS", "expected a whole number of days from 0 to 36500, got %r." % pii)
        pii_days = int(pii)
    return {"tenants": names, "pii_days": pii_days, "path": path, "exists": True}


def dropins(directory):
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith((".yml", ".yaml")) and not n.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LifeboatError("Cannot list %s: %s." % (directory, e.strerror), option="config")
    return [os.path.join(directory, n) for n in names]


class Config(object):
    """The merged, validated configuration of this host."""

    def __init__(self, settings, env, files):
        self.settings = settings
        self.env = env
        self.files = files
        self.discovered = {}

    def set_discovered(self, definitions):
        """Tenants that discovery found this run (discovery.tenants_for_run): ``tenant()`` knows them."""
        self.discovered = dict((d["name"], d) for d in definitions)

    def tenant_rpo(self, name):
        return (self.settings["tenants"].get(name) or {}).get("rpo") or self.settings["rpo"]

    def __getitem__(self, key):
        return self.settings[key]

    def get(self, key, default=None):
        return self.settings.get(key, default)

    @property
    def tenants(self):
        return list(self.env["tenants"])

    def tenant(self, name):
        """Settings of ``name`` with defaults: engine, database, schema, path, connection."""
        item = dict(self.settings["tenants"].get(name, {}))
        found = self.discovered.get(name) if name not in self.env["tenants"] else None
        if found:
            # A discovered tenant lives where discovery found it, on the top-level connection.
            for key in ("path", "connection", "database", "schema"):
                item.pop(key, None)
            item.update(engine="postgresql", database=found["database"])
            if found.get("schema"):
                item["schema"] = found["schema"]
            if found.get("rpo") and "rpo" not in item:
                item["rpo"] = found["rpo"]
        item.setdefault("engine", "postgresql")
        if item["engine"] == "postgresql":
            item.setdefault("database", name)
        conn = dict(self.settings["connection"])
        conn.update(item.get("connection") or {})
        item["connection"] = conn
        item.setdefault("rpo", self.settings["rpo"])
        return item

    def require(self, key, why):
        """A key the chosen subcommand needs."""
        value = self.settings.get(key)
        if value in (None, "", [], {}):
            raise ConfigError(self.where, key, "is required %s." % why)
        return value

    @property
    def where(self):
        return " + ".join(os.path.basename(f) for f in self.files) or os.path.basename(CONFIG_FILE)


def load(config_file=CONFIG_FILE, tenants_env=TENANTS_ENV, dropin_dir=None, require_file=True):
    """Read, validate and merge the configuration. Raises ConfigError naming file and key."""
    if dropin_dir is None:
        dropin_dir = os.path.join(os.path.dirname(config_file), "lifeboat.d")
    files = []
    merged = {}
    if os.path.exists(config_file):
        files.append(config_file)
    elif require_file and not dropins(dropin_dir):
        raise LifeboatError(
            "The configuration file %s does not exist. The lifeboat roles write it; give another one with "
            "--config." % config_file, option="config")
    files.extend(dropins(dropin_dir))
    rules = None
    for path in files:
        where = path if path != config_file else os.path.basename(path)
        if os.path.dirname(path) == dropin_dir:
            where = os.path.join(os.path.basename(dropin_dir), os.path.basename(path))
        doc = check_document(parse_yaml(_read(path, "config"), where), where)
        # discover rules add up across the files: a drop-in adds rules, it does not replace the others.
        if "discover" in doc:
            rules = (rules or []) + (doc.pop("discover") or [])
        merged = merge(merged, doc)
    settings = merge(DEFAULTS, merged)
    settings["discover"] = rules
    if len(files) > 1:
        # Each file was valid alone; a tenant's settings may come from several of them.
        names = " + ".join(os.path.basename(f) for f in files)
        settings["tenants"] = tenants(settings["tenants"], names, "tenants")
    env = load_tenants_env(tenants_env)
    return Config(settings, env, files)
