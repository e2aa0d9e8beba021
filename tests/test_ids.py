"""Message ids made without ``uuid.UUID`` objects read as version 4 UUIDs, and never repeat."""

from __future__ import annotations

import uuid

from core.ids import uuid4_hex, uuid4_str


def test_ids_are_what_uuid4_prints() -> None:
    for _ in range(2000):
        h, s = uuid4_hex(), uuid4_str()
        for text, form in ((h, "hex"), (s, "str")):
            u = uuid.UUID(text)
            assert (u.version, u.variant) == (4, uuid.RFC_4122)
            assert (u.hex if form == "hex" else str(u)) == text


def test_ids_do_not_repeat() -> None:
    ids = {uuid4_hex() for _ in range(50_000)}
    assert len(ids) == 50_000


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    """The 4 KiB of random bytes the parent holds are not handed on to a child."""
    import os

    uuid4_hex()  # the parent now holds unread bytes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(w, ",".join(uuid4_hex() for _ in range(10)).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 10_000).decode().split(",")
    os.waitpid(pid, 0)
    os.close(r)
    parent = [uuid4_hex() for _ in range(10)]
    assert len(child) == 10 and not set(child) & set(parent)


def test_threads_make_ids_of_their_own() -> None:
    """Each thread draws its own random bytes: ids made at once in several threads are still
    version 4 UUIDs that never repeat."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [uuid4_str() for _ in range(5000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 40_000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids[::97])
