"""lifeboat.backup.drill_metrics: a drill's rows (drill_row) as the textfile the dashboard's drill panels read."""

import datetime
import sys

import lbtest
import monitoring

sys.path.insert(0, str(lbtest.COLLECTIONS))  # the filters import the engine through the collection

# pylint: disable=wrong-import-position
from ansible_collections.lifeboat.backup.plugins.filter import monitoring as monitoring_filters  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.filter import report  # noqa: E402

T0 = "2026-01-01T02:40:00.000000Z"


def verify(status, artifact):
    return {"changed": False, "status": status, "tenants": [{"artifact": "/r/acme/" + artifact, "status": status}]}


def test_drill_rows_become_metrics_per_host_and_tenant():
    now = datetime.datetime(2026, 1, 1, 2, 41, 30)
    rows = [report.drill_row({"name": "acme", "rto": "1h"}, verify("PASS", "acme-20260101T013000Z.pgdump.zst.age"), T0,
                             host="v1", now=now),
            report.drill_row({"name": "globex", "rpo": "1h"}, verify("FAIL", "globex-20251231T000000Z.pgdump.zst.age"),
                             T0, host="v1", now=now)]
    text = monitoring_filters.FilterModule().filters()["drill_metrics"](rows, finished=1767235290.0)
    samples = monitoring.parse_textfile(text)

    def value(name, tenant):
        return samples[(name, (("host", "v1"), ("tenant", tenant)))]
    assert value("lifeboat_drill_rto_seconds", "acme") == 90.0
    assert value("lifeboat_drill_rto_budget_seconds", "acme") == 3600
    assert value("lifeboat_drill_rpo_seconds", "acme") == 70 * 60
    assert value("lifeboat_drill_rpo_budget_seconds", "globex") == 3600
    assert value("lifeboat_drill_status", "acme") == 1 and value("lifeboat_drill_status", "globex") == 0
    assert samples[("lifeboat_drill_timestamp_seconds", ())] == 1767235290.0
