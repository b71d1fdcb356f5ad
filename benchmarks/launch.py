"""Run a command and report its peak RSS and CPU time: python3 -S launch.py OUT -- ARGV...

A small parent on purpose: Linux starts a child's ru_maxrss at its parent's
RSS at fork time, so commands are started from this ~8 MB process, not from
the benchmark runner. Writes {"rss_kb", "cpu_seconds", "rc"} to OUT as JSON.
"""
import json
import os
import sys

out, argv = sys.argv[1], sys.argv[3:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
rc = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"rss_kb": usage.ru_maxrss, "cpu_seconds": usage.ru_utime + usage.ru_stime, "rc": rc}, f)
sys.exit(rc if rc >= 0 else 128 - rc)
