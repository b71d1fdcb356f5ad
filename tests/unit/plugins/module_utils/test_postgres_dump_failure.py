"""pg_dump's permission failures become errors that name the object and the grant that fixes it.

The stderr texts are pg_dump 15's, copied from real failed runs against the zoo (tests/zoo/); the
integration test (tests/integration/test_fidelity_zoo.py) makes them happen for real.
"""

import pytest

from lifeboat_engine import postgres
from lifeboat_engine.errors import LifeboatError

FAILED = "pg_dump of database 'Zoo Db' on 127.0.0.1:5432 failed: pg_dump exited with code 1: "

CASES = [
    ("pg_dump: error: query failed: ERROR:  permission denied for table payroll\n"
     "pg_dump: detail: Query was: LOCK TABLE public.payroll IN ACCESS SHARE MODE",
     ['cannot read table "public"."payroll"', 'GRANT USAGE ON SCHEMA "public" TO "zoo_backup"',
      'GRANT SELECT ON "public"."payroll" TO "zoo_backup"']),
    ("pg_dump: error: query failed: ERROR:  permission denied for table Order \"Lines\" 2026\n"
     "pg_dump: detail: Query was: LOCK TABLE \"Zoo \"\"Q\"\" Co's\".\"Order \"\"Lines\"\" 2026\" IN ACCESS SHARE MODE",
     ['GRANT SELECT ON "Zoo ""Q"" Co\'s"."Order ""Lines"" 2026" TO "zoo_backup"']),
    ("pg_dump: error: query failed: ERROR:  permission denied for sequence invoice_no\n"
     "pg_dump: detail: Query was: SELECT last_value, is_called FROM zoo_plain.invoice_no",
     ['cannot read sequence "zoo_plain"."invoice_no"', 'GRANT SELECT ON "zoo_plain"."invoice_no" TO "zoo_backup"']),
    ("pg_dump: error: query failed: ERROR:  query would be affected by row-level security policy for table \"notes\"\n"
     "pg_dump: detail: Query was: COPY public.notes (id, owner_role, body, confidential) TO stdout;",
     ['row-level security policies of table "public"."notes"', 'ALTER ROLE "zoo_backup" BYPASSRLS']),
    ("pg_dump: error: could not open large object 18757: ERROR:  permission denied for large object 18757",
     ["cannot read large object 18757", 'GRANT SELECT ON LARGE OBJECT 18757 TO "zoo_backup"',
      "pg_largeobject_metadata"]),
]


@pytest.mark.parametrize("stderr,words", CASES, ids=["table", "quoted-names", "sequence", "rls", "large-object"])
def test_a_permission_failure_names_the_object_and_its_fix(stderr, words):
    error = postgres.dump_failure(LifeboatError(FAILED + stderr, details={"rc": 1}), "Zoo Db", "zoo_backup")
    text = str(error)
    for word in words:
        assert word in text, text
    assert error.option == "login_user" and "Nothing was published" in text and "'Zoo Db'" in text
    assert error.details == {"rc": 1}


def test_other_failures_are_left_as_they_are():
    error = LifeboatError(FAILED + "pg_dump: error: connection to server lost")
    assert postgres.dump_failure(error, "Zoo Db", "zoo_backup") is error
    # a permission failure whose object pg_dump's query does not name is left as it is, too
    error = LifeboatError(FAILED + "pg_dump: error: query failed: ERROR:  permission denied for table payroll")
    assert postgres.dump_failure(error, "Zoo Db", "zoo_backup") is error
