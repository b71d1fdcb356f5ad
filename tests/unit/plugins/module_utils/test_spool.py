"""spool.py: byte streams handed between threads within one budget (backup_pass's read-ahead)."""

import threading
import time

import pytest

from lifeboat_engine import spool


def producer(sp, chunks, done=True):
    def run():
        try:
            for c in chunks:
                sp.put(c)
            if done:
                sp.finish()
        except spool.Stopped:
            pass
    t = threading.Thread(target=run)
    t.daemon = True
    t.start()
    return t


def read_all(sp, size=-1):
    out = []
    for chunk in iter(lambda: sp.read(size), b""):
        out.append(chunk)
    return b"".join(out)


def test_a_stream_larger_than_the_budget_streams_through_and_never_exceeds_it():
    budget = spool.Budget(10)
    sp = spool.Spool("a", budget)
    chunks = [bytes([65 + i % 26]) * 4 for i in range(100)]
    t = producer(sp, chunks)
    assert read_all(sp, 3) == b"".join(chunks)
    t.join(5)
    assert not t.is_alive()
    assert budget.peak <= 10 and budget.used == 0


def test_the_producer_waits_when_the_budget_is_full():
    budget = spool.Budget(8)
    sp = spool.Spool("a", budget)
    t = producer(sp, [b"12345678", b"x"])
    time.sleep(0.3)
    assert t.is_alive(), "the second chunk must wait: the budget is full"
    assert sp.read(100) == b"12345678"
    t.join(5)
    assert not t.is_alive()
    assert read_all(sp) == b"x"


def test_a_chunk_larger_than_the_budget_goes_through_alone():
    budget = spool.Budget(4)
    sp = spool.Spool("a", budget)
    t = producer(sp, [b"0123456789"])
    assert read_all(sp, 4) == b"0123456789"
    t.join(5)


def test_spools_share_their_budget_and_keep_their_order():
    budget = spool.Budget(1 << 20)
    spools = [spool.Spool(str(i), budget) for i in range(5)]

    def run():
        for i, sp in enumerate(spools):
            sp.put(b"%d-" % i * 3)
            sp.finish()
    t = threading.Thread(target=run)
    t.start()
    t.join(5)  # all of it fits: the producer is done before anything is read
    assert not t.is_alive()
    assert budget.used == 5 * 6
    assert [read_all(sp) for sp in spools] == [b"%d-" % i * 3 for i in range(5)]
    assert budget.used == 0


def test_a_failed_stream_raises_after_what_it_gave():
    budget = spool.Budget(100)
    sp = spool.Spool("a", budget)
    sp.put(b"abc")
    sp.fail(ValueError("pg_dump died"))
    assert sp.read() == b"abc"
    with pytest.raises(ValueError, match="pg_dump died"):
        sp.read()


def test_an_abandoned_spool_frees_its_bytes_and_never_holds_the_producer_up():
    budget = spool.Budget(4)
    sp = spool.Spool("a", budget)
    other = spool.Spool("b", budget)
    t = producer(sp, [b"1234", b"5678", b"9abc"])
    time.sleep(0.2)
    assert t.is_alive()
    sp.abandon()
    t.join(5)
    assert not t.is_alive(), "an abandoned spool's producer must not wait"
    assert budget.used == 0
    other.put(b"1234")  # the budget is free for the next one
    assert budget.used == 4


def test_stop_wakes_a_waiting_producer_and_a_waiting_reader():
    budget = spool.Budget(2)
    sp = spool.Spool("a", budget)
    sp.put(b"12")
    raised = []

    def put():
        try:
            sp.put(b"34")
        except spool.Stopped:
            raised.append("put")
    t = threading.Thread(target=put)
    t.start()
    empty = spool.Spool("b", budget)

    def read():
        try:
            empty.read()
        except spool.Stopped:
            raised.append("read")
    r = threading.Thread(target=read)
    r.start()
    time.sleep(0.2)
    budget.stop()
    t.join(5)
    r.join(5)
    assert sorted(raised) == ["put", "read"]
