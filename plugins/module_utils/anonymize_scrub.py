# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scrubbing strategies of tenant_anonymize: pure functions, no database.

Every scrubbed value is recognizable from the value alone, so that a second
run finds nothing left to do (idempotency decided from the data):

==============  ===============================================  ==========
strategy        scrubbed value                                   recognized
==============  ===============================================  ==========
null            NULL                                             IS NULL
redact          the fixed text (default ``[redacted]``)          = text
hash            ``anon:`` + 64 hex digits of HMAC-SHA256         pattern
email           ``anon-<24 hex>@anonymized.invalid``             pattern
keep_domain     ``anon-<24 hex>@<original domain>``              pattern
truncate_date   the date cut to its year (month, day)            = itself
==============  ===============================================  ==========

The hex digits are HMAC-SHA256(secret, value): the same value gives the same
digits in every table and every tenant scrubbed with the same secret, so
joins and counts on the scrubbed column still work, while nobody without the
secret can test a guess. ``email`` and ``keep_domain`` hash the address
trimmed and lower-cased, so ``Ann@X.org`` and ``ann@x.org`` stay equal.
``.invalid`` is reserved (RFC 2606): a fake address can never be delivered.
"""

import hashlib
import hmac
import re

HASH_PREFIX = "anon:"
HASH_DIGITS = 64
EMAIL_PREFIX = "anon-"
EMAIL_DIGITS = 24
FAKE_DOMAIN = "anonymized.invalid"
DEFAULT_REDACT_TEXT = "[redacted]"

# anonymize_pg tests the same forms with string functions (length, left, substr, ltrim).
_HASH_RE = re.compile(r"\Aanon:[0-9a-f]{64}\Z")
_EMAIL_RE = re.compile(r"\Aanon-[0-9a-f]{24}@anonymized\.invalid\Z")
_KEEP_DOMAIN_RE = re.compile(r"\Aanon-[0-9a-f]{24}@")
_DOMAIN_RE = re.compile(r"\A(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")

HASH_LENGTH = len(HASH_PREFIX) + HASH_DIGITS  # 69
EMAIL_LENGTH = len(EMAIL_PREFIX) + EMAIL_DIGITS + 1 + len(FAKE_DOMAIN)  # 48

STRATEGIES = ("null", "redact", "hash", "email", "keep_domain", "truncate_date")
SECRET_STRATEGIES = ("hash", "email", "keep_domain")
TEXT_STRATEGIES = ("redact", "hash", "email", "keep_domain")
UNITS = ("year", "month", "day")
MIN_SECRET_BYTES = 16


# -- values -------------------------------------------------------------------

def to_bytes(value):
    """The bytes a value is hashed as: UTF-8 of its text, raw bytes as they are."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        value = str(value)
    return value.encode("utf-8", "surrogatepass")


def to_text(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


_KEYED = {}


def digest(secret, value):
    """Hex HMAC-SHA256 of ``value`` under ``secret`` (bytes)."""
    base = _KEYED.get(secret)
    if base is None:
        _KEYED.clear()  # one secret per run: keep a single keyed state, never a list of secrets
        base = _KEYED[secret] = hmac.new(secret, digestmod=hashlib.sha256)
    h = base.copy()
    h.update(to_bytes(value))
    return h.hexdigest()


def normalize_email(value):
    return to_text(value).strip().lower()


def email_domain(value):
    """The domain of an address, lower-cased, or None when it is not a plain DNS name."""
    text = normalize_email(value)
    if "@" not in text:
        return None
    domain = text.rsplit("@", 1)[1].strip().rstrip(".")
    if len(domain) > 253 or not _DOMAIN_RE.match(domain):
        return None
    return domain


# -- strategies -----------------------------------------------------------------

def hash_value(secret, value):
    return HASH_PREFIX + digest(secret, value)


def fake_local(secret, value):
    return EMAIL_PREFIX + digest(secret, normalize_email(value))[:EMAIL_DIGITS]


def email_value(secret, value):
    return fake_local(secret, value) + "@" + FAKE_DOMAIN


def keep_domain_value(secret, value, max_length=None):
    """``anon-<hex>@domain``; the fake domain when there is no usable domain or it does not fit."""
    domain = email_domain(value) or FAKE_DOMAIN
    out = fake_local(secret, value) + "@" + domain
    if max_length is not None and len(out) > max_length:
        out = fake_local(secret, value) + "@" + FAKE_DOMAIN
    return out


def is_hash(value):
    return isinstance(value, str) and bool(_HASH_RE.match(value))


def is_email(value):
    return isinstance(value, str) and bool(_EMAIL_RE.match(value))


def is_keep_domain(value):
    return isinstance(value, str) and bool(_KEEP_DOMAIN_RE.match(value))


_ISO_DATE_RE = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})"
    r"(?:([T ])(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?\Z"
)
_NUMBER_RE = re.compile(r"\A\s*-?\d+(?:\.\d+)?\s*\Z")


def _days_before(year, month, day):
    """Days from 1970-01-01 to the given date (proleptic Gregorian), or None when the date does not exist."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > (29 if leap else 28) if month == 2 else day > (30 if month in (4, 6, 9, 11) else 31):
        return None
    # H. Hinnant, days_from_civil
    y = year - (month <= 2)
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_iso(value):
    """(Unix seconds, had_time) of an ISO 8601 text (UTC unless it carries an offset), or None."""
    if not isinstance(value, str):
        return None
    m = _ISO_DATE_RE.match(value.strip())
    if not m:
        return None
    y, mo, d, sep, hh, mi, ss, frac, tz = m.groups()
    days = _days_before(int(y), int(mo), int(d))
    if days is None:
        return None
    hh, mi, ss = int(hh or 0), int(mi or 0), int(ss or 0)
    if hh > 23 or mi > 59 or ss > 59:
        return None
    seconds = days * 86400 + hh * 3600 + mi * 60 + ss + (float("0." + frac) if frac else 0.0)
    if tz and tz != "Z":
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
        seconds -= offset if tz[0] == "+" else -offset
    return seconds, sep is not None


def epoch_seconds(value):
    """A SQLite time stamp as Unix seconds: ISO 8601 text (UTC unless it says
    otherwise), or a number (int, real or numeric text) of Unix seconds.
    None for NULL and for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if _NUMBER_RE.match(value):
            return float(value)
        parsed = parse_iso(value)
        if parsed:
            return float(parsed[0])
    return None


def truncate_text(value, unit):
    """An ISO date or date-time text cut to ``unit``; None when it is not one.

    ``2001-07-14`` -> ``2001-01-01`` (year); ``2001-07-14 10:11:12+02:00`` ->
    ``2001-01-01 00:00:00`` (the time of day and the offset are dropped).
    """
    if not isinstance(value, str):
        return None
    m = _ISO_DATE_RE.match(value.strip())
    if not m:
        return None
    if parse_iso(value) is None:
        return None
    y, mo, d, sep = m.group(1), m.group(2), m.group(3), m.group(4)
    if unit == "year":
        mo, d = "01", "01"
    elif unit == "month":
        d = "01"
    out = "%s-%s-%s" % (y, mo, d)
    if sep:
        out += sep + "00:00:00"
    return out


class Strategy(object):
    """One column's strategy: ``name`` plus ``text`` (redact) or ``unit`` (truncate_date)."""

    def __init__(self, name, text=None, unit=None):
        self.name = name
        self.text = DEFAULT_REDACT_TEXT if (name == "redact" and text is None) else text
        self.unit = (unit or "year") if name == "truncate_date" else None

    @property
    def needs_secret(self):
        return self.name in SECRET_STRATEGIES

    @property
    def min_length(self):
        """Characters the scrubbed value needs (text strategies)."""
        if self.name == "redact":
            return len(self.text)
        if self.name == "hash":
            return HASH_LENGTH
        if self.name in ("email", "keep_domain"):
            return EMAIL_LENGTH
        return None

    def describe(self):
        out = {"strategy": self.name}
        if self.name == "truncate_date":
            out["unit"] = self.unit
        return out

    def is_scrubbed(self, value):
        """True when ``value`` is already in scrubbed form (NULL counts as nothing to scrub)."""
        if value is None:
            return True
        if self.name == "null":
            return False
        if self.name == "redact":
            return to_text(value) == self.text
        if self.name == "hash":
            return is_hash(value)
        if self.name == "email":
            return is_email(value)
        if self.name == "keep_domain":
            return is_keep_domain(value)
        if self.name == "truncate_date":
            return truncate_text(value, self.unit) == value
        raise ValueError(self.name)

    def scrubber(self, secret, max_length=None):
        """``scrub`` for one column and one secret, as a function of the value alone.

        The same results as ``scrub``, with the keyed state and the checks bound
        once per column rather than looked up per value (anonymize_pg calls it
        for every row of a batch)."""
        if self.name not in ("hash", "email"):
            return lambda value: self.scrub(value, secret, max_length)
        copy = hmac.new(secret, digestmod=hashlib.sha256).copy

        def hexdigest(value):
            h = copy()
            h.update(value.encode("utf-8", "surrogatepass") if isinstance(value, str) else to_bytes(value))
            return h.hexdigest()

        if self.name == "hash":
            match = _HASH_RE.match

            def one(value):
                if value is None or (isinstance(value, str) and match(value)):
                    return value
                return HASH_PREFIX + hexdigest(value)
        else:
            match, suffix = _EMAIL_RE.match, "@" + FAKE_DOMAIN

            def one(value):
                if value is None or (isinstance(value, str) and match(value)):
                    return value
                return EMAIL_PREFIX + hexdigest(normalize_email(value))[:EMAIL_DIGITS] + suffix
        return one

    def scrub(self, value, secret, max_length=None):
        """The scrubbed form of ``value`` (``value`` itself when already scrubbed)."""
        if self.is_scrubbed(value):
            return value
        if self.name == "null":
            return None
        if self.name == "redact":
            return self.text
        if self.name == "hash":
            return hash_value(secret, value)
        if self.name == "email":
            return email_value(secret, value)
        if self.name == "keep_domain":
            return keep_domain_value(secret, value, max_length)
        if self.name == "truncate_date":
            out = truncate_text(value, self.unit)
            if out is None:
                raise ValueError("not an ISO date")
            return out
        raise ValueError(self.name)
