import pytest

from lifeboat_engine import crypto
from lifeboat_engine.errors import LifeboatError


def test_recipients_parse_and_dedupe(tmp_path):
    _ident, pub = crypto.generate_identity()
    f = tmp_path / "r.txt"
    f.write_text("# team keys\n\n%s\n" % pub)
    objs, texts = crypto.load_recipients([pub], str(f))
    assert texts == [pub] and len(objs) == 1


@pytest.mark.parametrize("bad", ["age1notakey", "hello", "ssh-ed25519 AAAAnot", ""])
def test_malformed_recipients_are_named(bad):
    with pytest.raises(LifeboatError) as e:
        crypto.load_recipients([bad])
    assert e.value.option == "recipients"
    assert "recipient" in str(e.value)


def test_an_identity_given_as_recipient_is_refused_without_echoing_it():
    ident, _pub = crypto.generate_identity()
    with pytest.raises(LifeboatError) as e:
        crypto.load_recipients([ident])
    assert ident not in str(e.value)
    assert "private key" in str(e.value)


def test_identity_sources(tmp_path, monkeypatch):
    ident, pub = crypto.generate_identity()
    f = tmp_path / "key.txt"
    f.write_text(crypto.identity_file_text(ident, pub))
    assert len(crypto.load_identities(identity_file=str(f))) == 1
    assert len(crypto.load_identities(identity=ident)) == 1
    assert len(crypto.load_identities(environ={"BACKUP_PRIVATE_KEY": ident})) == 1
    assert crypto.public_key_of_identity_file(str(f)) == [pub]
    with pytest.raises(LifeboatError) as e:
        crypto.load_identities(environ={})
    assert "identity_file" in str(e.value)


def test_a_public_key_given_as_identity_fails_without_echo(tmp_path):
    _ident, pub = crypto.generate_identity()
    with pytest.raises(LifeboatError) as e:
        crypto.load_identities(identity=pub)
    assert "not an age identity" in str(e.value)
