"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip.

ansible-test --venv fetches get-pip.py from a host that these machines cannot
reach. This file takes its place in ansible-test's cache: it installs pip
with ensurepip, then installs the packages ansible-test asked for from the
package index pip is configured with.
"""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
