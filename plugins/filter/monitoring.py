# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drill's rows as a node_exporter textfile (lifeboat.backup.drill_metrics), for the
dashboard's drill panels (monitoring/dashboards/lifeboat.json)."""

from __future__ import annotations

import time

from ansible_collections.lifeboat.backup.plugins.module_utils.agent_metrics import render_drill


def drill_metrics(rows, finished=None):
    """``lifeboat_drill.prom``'s text: RTO, RPO, their budgets and the result per host and tenant."""
    return render_drill(list(rows or []), time.time() if finished is None else finished)


class FilterModule(object):
    """lifeboat.backup's monitoring filters."""

    def filters(self):
        return {"drill_metrics": drill_metrics}
