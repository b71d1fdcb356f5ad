"""Interop both ways with Debian's age CLI: X25519 (age-keygen), SSH keys
(ssh-keygen), recipients files, armor, passphrases (age asks on a terminal:
driven through a pseudo-terminal), files and tar bundles made by GNU tar."""

import os
import pty
import select
import shutil
import subprocess
import time

import pytest

import lbtest

lbtest.load_engine()
from lifeboat_engine import agefile  # noqa: E402


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory):
    if not shutil.which("ssh-keygen"):
        pytest.fail("ssh-keygen is missing: install openssh-client (make test does).")
    d = tmp_path_factory.mktemp("ssh")
    out = {}
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        path = str(d / kind)
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "op@example", "-f", path] + extra, check=True)
        with open(path + ".pub") as f:
            out[kind] = (path, f.read().strip())
    return out


def age_on_a_terminal(argv, answers, timeout=20):
    """Run the age CLI with a pseudo-terminal as its /dev/tty, answering its passphrase prompts."""
    master, slave = pty.openpty()
    name = os.ttyname(slave)

    def attach():
        fd = os.open(name, os.O_RDWR)  # first tty opened by a session leader: the controlling terminal
        os.dup2(fd, 2)
        os.close(fd)

    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=attach, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    os.close(slave)
    answers = list(answers)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _w, _x = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                seen += os.read(master, 1024)
            except OSError:
                break
            if b":" in seen and answers:
                time.sleep(0.05)
                os.write(master, answers.pop(0).encode() + b"\r")
                seen = b""
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        proc.wait()
    finally:
        os.close(master)
        proc.stdout.close()
    return proc.returncode, out


def _tree(root):
    out = {}
    for base, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(base, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read(), os.stat(p).st_mode & 0o777)
    return out


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "etc-app"
    (src / "ssl").mkdir(parents=True)
    (src / ".env").write_text("TOKEN=abc\n")
    (src / "ssl" / "key.pem").write_bytes(os.urandom(100000))
    os.chmod(str(src / "ssl" / "key.pem"), 0o600)
    os.symlink("ssl/key.pem", str(src / "key.pem"))
    return src


@pytest.mark.parametrize("kind", ["x25519", "ssh-ed25519", "ssh-rsa", "armored"])
def test_module_output_decrypts_with_the_age_cli(tmp_path, keys, ssh_keys, folder, kind):
    recipient, identity = {
        "x25519": (keys["public"], keys["identity"]),
        "armored": (keys["public"], keys["identity"]),
        "ssh-ed25519": (ssh_keys["ed25519"][1], ssh_keys["ed25519"][0]),
        "ssh-rsa": (ssh_keys["rsa"][1], ssh_keys["rsa"][0]),
    }[kind]
    armor = kind == "armored"
    enc = tmp_path / "env.age"
    agefile.run({"src": str(folder / ".env"), "dest": str(enc), "recipients": [recipient], "armor": armor})
    out = subprocess.run(["age", "-d", "-i", identity, str(enc)], capture_output=True, check=True).stdout
    assert out == b"TOKEN=abc\n"
    bundle = tmp_path / "b.tar.zst.age"
    agefile.run({"src": str(folder), "dest": str(bundle), "recipients": [recipient], "armor": armor})
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run("age -d -i '%s' '%s' | zstd -d | tar -x -C '%s'" % (identity, bundle, unpacked), shell=True,
                   check=True)
    assert _tree(str(unpacked)) == _tree(str(folder))


@pytest.mark.parametrize("kind", ["x25519", "ssh-ed25519", "ssh-rsa", "recipients_file", "armored"])
def test_age_cli_output_decrypts_with_the_module(tmp_path, keys, ssh_keys, kind):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(150000))
    rfile = tmp_path / "recipients.txt"
    rfile.write_text("# two keys\n%s\n%s\n" % (keys["other_public"], ssh_keys["rsa"][1]))
    args, identity = {
        "x25519": (["-r", keys["public"]], keys["identity"]),
        "armored": (["-a", "-r", keys["public"]], keys["identity"]),
        "ssh-ed25519": (["-R", ssh_keys["ed25519"][0] + ".pub"], ssh_keys["ed25519"][0]),
        "ssh-rsa": (["-r", ssh_keys["rsa"][1]], ssh_keys["rsa"][0]),
        "recipients_file": (["-R", str(rfile)], keys["other_identity"]),
    }[kind]
    enc = tmp_path / "plain.bin.age"
    subprocess.run(["age"] + args + ["-o", str(enc), str(plain)], check=True)
    out = tmp_path / "out.bin"
    res = agefile.run({"state": "decrypted", "src": str(enc), "dest": str(out), "identity_file": identity})
    assert res["changed"] and out.read_bytes() == plain.read_bytes()


def test_a_gnu_tar_bundle_made_with_the_cli_unpacks(tmp_path, keys, folder):
    enc = tmp_path / "etc.tar.zst.age"
    subprocess.run("tar -C '%s' -cf - . | zstd -q | age -r %s -o '%s'" % (folder, keys["public"], enc), shell=True,
                   check=True)
    dest = tmp_path / "restored"
    res = agefile.run({"state": "decrypted", "src": str(enc), "dest": str(dest), "identity_file": keys["identity"]})
    assert res["changed"] and _tree(str(dest)) == _tree(str(folder))


def test_passphrases_interoperate_both_ways(tmp_path):
    plain = tmp_path / "codes.txt"
    plain.write_text("recovery codes\n")
    mine = tmp_path / "mine.age"
    agefile.run({"src": str(plain), "dest": str(mine), "passphrase": "pw one", "armor": True})
    rc, out = age_on_a_terminal(["age", "-d", str(mine)], ["pw one"])
    assert rc == 0 and out == b"recovery codes\n"
    theirs = tmp_path / "theirs.age"
    rc, _out = age_on_a_terminal(["age", "-p", "-o", str(theirs), str(plain)], ["pw two", "pw two"])
    assert rc == 0 and theirs.exists()
    back = tmp_path / "back.txt"
    agefile.run({"state": "decrypted", "src": str(theirs), "dest": str(back), "passphrase": "pw two"})
    assert back.read_text() == "recovery codes\n"


def test_age_keygen_identity_from_the_environment(tmp_path, keys):
    plain = tmp_path / "p"
    plain.write_text("env\n")
    enc = tmp_path / "p.age"
    subprocess.run(["age", "-r", keys["public"], "-o", str(enc), str(plain)], check=True)
    with open(keys["identity"]) as f:
        identity = f.read()
    res = agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "o")},
                      environ={"BACKUP_PRIVATE_KEY": identity})
    assert res["changed"] and (tmp_path / "o").read_text() == "env\n"
