"""Bundles: hostile members are refused with nothing left under dest; headers and names."""

import io
import os
import subprocess
import tarfile

import pytest

from lifeboat_engine import age_stream, age_tar, agefile
from lifeboat_engine.errors import LifeboatError


def _tar(members):
    """A tar made by hand: members are (TarInfo fields, content or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for fields, content in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _f(name, content=b"data\n", mode=0o644):
    return ({"name": name, "type": tarfile.REGTYPE, "mode": mode}, content)


def _d(name, mode=0o755):
    return ({"name": name, "type": tarfile.DIRTYPE, "mode": mode}, None)


def _sym(name, target):
    return ({"name": name, "type": tarfile.SYMTYPE, "linkname": target}, None)


def _hard(name, target):
    return ({"name": name, "type": tarfile.LNKTYPE, "linkname": target}, None)


def _encrypt_with_cli(data, public, path):
    subprocess.run(["age", "-r", public, "-o", str(path)], input=data, check=True)


HOSTILE = {
    "absolute path": [_f("/etc/evil")],
    "dot-dot": [_f("ok"), _f("../evil")],
    "dot-dot inside": [_d("a"), _f("a/../../evil")],
    "absolute symlink": [_sym("etc", "/etc")],
    "symlink up": [_d("conf"), _sym("conf/up", "../../outside")],
    "symlink chain": [_sym("s", "."), _sym("t", "s/..")],
    "member under symlink": [_d("real"), _sym("link", "real"), _f("link/x")],
    "hard link outside": [_hard("h", "/etc/passwd")],
    "hard link to unknown": [_hard("h", "nothere")],
    "character device": [({"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
    "fifo": [({"name": "pipe", "type": tarfile.FIFOTYPE}, None)],
    "duplicate": [_f("x"), _f("x", b"other")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundles_are_refused_and_leave_nothing(tmp_path, keys, case):
    src = tmp_path / "evil.tar.age"
    _encrypt_with_cli(_tar([(dict(f), c) for f, c in HOSTILE[case]]), keys["public"], src)
    dest = tmp_path / "out" / "restore"
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(src), "dest": str(dest), "identity_file": keys["identity"],
                     "compression": "none"})
    assert "Refused to unpack" in str(e.value) and "Nothing was written" in str(e.value)
    assert not dest.exists()
    assert os.listdir(tmp_path / "out") == []  # no staging folder left
    assert sorted(os.listdir(tmp_path)) == ["evil.tar.age", "out"]
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out" / "evil").exists()


def test_hostile_member_into_existing_dest_changes_nothing(tmp_path, keys):
    dest = tmp_path / "etc-app"
    dest.mkdir()
    (dest / "keep.conf").write_text("keep\n")
    src = tmp_path / "evil.tar.age"
    _encrypt_with_cli(_tar([_f("new.conf"), _f("../escape")]), keys["public"], src)
    with pytest.raises(LifeboatError):
        agefile.run({"state": "decrypted", "src": str(src), "dest": str(dest), "identity_file": keys["identity"],
                     "format": "tar", "compression": "none"})
    assert sorted(os.listdir(dest)) == ["keep.conf"]
    assert sorted(os.listdir(tmp_path)) == ["etc-app", "evil.tar.age"]


def test_links_inside_dest_are_fine_and_existing_files_are_kept(tmp_path, keys):
    dest = tmp_path / "nginx"
    (dest / "sites-enabled").mkdir(parents=True)
    (dest / "local.conf").write_text("mine\n")
    bundle = _tar([_d("sites-available"), _f("sites-available/app", b"server {}\n", 0o640), _d("sites-enabled"),
                   _sym("sites-enabled/app", "../sites-available/app"), _hard("sites-available/app2", "sites-available/app")])
    src = tmp_path / "nginx.tar.age"
    _encrypt_with_cli(bundle, keys["public"], src)
    args = {"state": "decrypted", "src": str(src), "dest": str(dest), "identity_file": keys["identity"],
            "compression": "none"}
    res = agefile.run(args)
    assert res["changed"]
    assert (dest / "sites-enabled" / "app").read_text() == "server {}\n"
    assert os.readlink(dest / "sites-enabled" / "app") == "../sites-available/app"
    assert oct(os.stat(dest / "sites-available" / "app").st_mode & 0o777) == oct(0o640)
    assert (dest / "local.conf").read_text() == "mine\n"
    assert agefile.run(args)["changed"] is False
    (dest / "sites-available" / "app").write_text("changed\n")
    check = agefile.run(args, check_mode=True)
    assert check["changed"] and {"path": "sites-available/app", "action": "replace"} in check["changes"]
    assert (dest / "sites-available" / "app").read_text() == "changed\n"
    assert agefile.run(args)["changed"]
    assert (dest / "sites-available" / "app").read_text() == "server {}\n"


def test_a_symlink_in_dest_where_the_bundle_has_a_folder_is_not_followed(tmp_path, keys):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(str(outside), str(dest / "conf"))
    src = tmp_path / "b.tar.age"
    _encrypt_with_cli(_tar([_d("conf"), _f("conf/x")]), keys["public"], src)
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(src), "dest": str(dest), "identity_file": keys["identity"],
                     "compression": "none"})
    assert "symlink" in str(e.value) and e.value.option == "dest"
    assert os.listdir(outside) == []


@pytest.mark.parametrize("raw,expected", [
    ("a/b", "a/b"), ("./a//b/", "a/b"), (".", None), ("a/./b", "a/b"),
])
def test_safe_names(raw, expected):
    assert age_tar.safe_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "/abs", "a/../../b", "..", "a\0b"])
def test_unsafe_names(raw):
    with pytest.raises(age_tar.HostileMember):
        age_tar.safe_name(raw)


def test_header_parsing(keys, tmp_path):
    plain = tmp_path / "p"
    plain.write_bytes(b"x" * 10)
    for armor in (False, True):
        out = tmp_path / ("a%d" % int(armor))
        subprocess.run(["age", "-r", keys["public"], "-r", keys["other_public"]] + (["-a"] if armor else []) +
                       ["-o", str(out), str(plain)], check=True)
        header = age_stream.read_header(str(out))
        assert header == {"armored": armor, "stanzas": ["X25519", "X25519"]}
    assert age_stream.parse_header(b"hello world") is None
    with pytest.raises(LifeboatError):
        age_stream.parse_header(b"age-encryption.org/v1\n-> X25519 abc\n")
    with pytest.raises(LifeboatError) as e:
        age_stream.read_header(str(plain))
    assert "not an age file" in str(e.value)


def test_content_digest_matches_what_the_bundle_records(tmp_path):
    src = tmp_path / "cfg"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("1")
    os.symlink("d/f", str(src / "l"))
    digest, stats = age_tar.write_tar(str(src), io.BytesIO())
    assert digest == age_tar.content_digest(str(src))
    assert stats["files"] == 1 and stats["links"] == 1 and stats["dirs"] == 1
    os.utime(str(src / "d" / "f"), (1, 1))
    assert age_tar.content_digest(str(src)) == digest  # times do not count
    os.chmod(str(src / "d" / "f"), 0o600)
    assert age_tar.content_digest(str(src)) != digest


@pytest.mark.parametrize("value,expected", [(None, 0o600), ("0640", 0o640), ("600", 0o600), (0o644, 0o644)])
def test_modes(value, expected):
    assert agefile.parse_mode(value) == expected


@pytest.mark.parametrize("value", ["u=rw", "0999", True, "-1", 0o17777])
def test_bad_modes(value):
    with pytest.raises(LifeboatError) as e:
        agefile.parse_mode(value)
    assert e.value.option == "mode"


def test_sha256_of_counts_the_head_and_the_rest(tmp_path):
    import hashlib
    data = os.urandom(3 * (1 << 20) + 17)
    assert age_tar.sha256_of(io.BytesIO(data[100:]), data[:100]) == (hashlib.sha256(data).hexdigest(), len(data))
    path = tmp_path / "f"
    path.write_bytes(data)
    link = tmp_path / "link"
    link.symlink_to(path)
    assert age_tar.file_sha256(str(link)) == hashlib.sha256(data).hexdigest()
    with pytest.raises(OSError):
        age_tar.file_sha256(str(link), follow=False)  # what the tar reader uses: never through a link
