# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's version; a unit test keeps it equal to galaxy.yml's."""

TOOL_NAME = "lifeboat.backup"
TOOL_VERSION = "0.1.0"
