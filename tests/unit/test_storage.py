"""portal.storage: atomic writes, uploads copied a chunk at a time or linked, under a size limit."""
from __future__ import annotations

import errno
import io
import os

import pytest

from portal.storage import Storage

CAMPAIGN = "0123456789abcdef0123456789abcdef"


class CountingStream(io.BytesIO):
    """An upload stream that remembers the largest read asked of it."""

    largest = 0

    def read(self, size=-1):
        self.largest = max(self.largest, size if size is not None and size >= 0 else len(self.getvalue()))
        return super().read(size)


def test_an_upload_is_copied_whole_in_bounded_reads(tmp_path):
    store, data = Storage(tmp_path), os.urandom(3 * 1024 * 1024 + 17)
    stream = CountingStream(data)
    assert store.save_upload(CAMPAIGN, stream, limit=len(data)) == len(data)
    assert store.source_path(CAMPAIGN).read_bytes() == data
    assert stream.largest <= 1 << 20  # never the whole upload in memory at once
    assert [p.name for p in store.campaign_dir(CAMPAIGN).iterdir()] == ["source"]


def test_an_upload_over_the_limit_leaves_nothing(tmp_path):
    store = Storage(tmp_path)
    with pytest.raises(ValueError, match="larger than the limit"):
        store.save_upload(CAMPAIGN, io.BytesIO(b"x" * (2 * 1024 * 1024)), limit=1024 * 1024 + 1)
    assert list(store.campaign_dir(CAMPAIGN).iterdir()) == []  # no source, no temp file


def test_a_write_replaces_the_file_atomically(tmp_path):
    store = Storage(tmp_path)
    path = store.variant_path(CAMPAIGN, "1:1")
    store.write(path, b"first")
    store.write(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_an_upload_received_in_incoming_is_linked_not_copied(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store, data = Storage("storage"), os.urandom(700 * 1024)  # relative, as the default ./storage
    with store.incoming_file() as received:
        received.write(data)
        assert store.save_upload(CAMPAIGN, received, limit=len(data)) == len(data)
        assert os.path.samefile(received.name, store.source_path(CAMPAIGN))  # one file, two names
    assert store.source_path(CAMPAIGN).read_bytes() == data
    assert list((tmp_path / "storage" / "incoming").iterdir()) == []  # the temporary name went with the request


def test_an_incoming_upload_is_copied_where_hard_links_are_refused(tmp_path, monkeypatch):
    store, data = Storage(tmp_path), os.urandom(700 * 1024)

    def refused(*_args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)
    with store.incoming_file() as received:
        received.write(data)
        assert store.save_upload(CAMPAIGN, received, limit=len(data)) == len(data)
    assert store.source_path(CAMPAIGN).read_bytes() == data
    assert [p.name for p in store.campaign_dir(CAMPAIGN).iterdir()] == ["source"]


def test_an_incoming_upload_over_the_limit_is_refused(tmp_path):
    store = Storage(tmp_path)
    with store.incoming_file() as received:
        received.write(b"x" * 2048)
        with pytest.raises(ValueError, match="larger than the limit"):
            store.save_upload(CAMPAIGN, received, limit=1024)
    assert not store.source_path(CAMPAIGN).exists()


def test_sweep_removes_only_what_killed_processes_left(tmp_path):
    store = Storage(tmp_path)
    assert store.sweep_incoming() == 0  # no folder yet
    live = store.incoming_file()
    left = tmp_path / "incoming" / ".tmp-left"  # as a process killed mid-upload leaves it
    left.write_bytes(b"x")
    assert store.sweep_incoming() == 0  # young: its request may still be running
    hour_ago = left.stat().st_mtime - 3700
    os.utime(left, (hour_ago, hour_ago))
    assert store.sweep_incoming() == 1
    assert not left.exists() and os.path.exists(live.name)
    live.close()
