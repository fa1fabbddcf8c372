"""worker.fs_broker: the embedded broker never shows a consumer a half-written message."""
from __future__ import annotations

import os

from kombu import Connection, Exchange, Queue
from kombu.transport import resolve_transport

import worker.celery_app  # noqa: F401  (registers the transport under "filesystem")
from worker import fs_broker


def connection(folder) -> Connection:
    folder.mkdir(exist_ok=True)
    return Connection("filesystem://", transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False})


def test_filesystem_urls_use_our_transport():
    assert resolve_transport("filesystem") is fs_broker.Transport


def test_a_message_appears_only_whole(tmp_path, monkeypatch):
    folder = tmp_path / "queue"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        # At the moment of the rename: the consumer's pattern matches nothing yet, and the
        # aside file already holds the whole message.
        seen.append(([n for n in os.listdir(folder) if n.endswith(".msg")], os.path.getsize(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(fs_broker.os, "replace", replace)
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    with connection(folder) as conn:
        conn.Producer().publish({"campaign": "x" * 100_000}, exchange=queue.exchange,
                                routing_key="jobs", declare=[queue])
        message = conn.SimpleQueue(queue).get(timeout=5)
        assert message.payload == {"campaign": "x" * 100_000}
        message.ack()
    assert len(seen) == 1 and seen[0][0] == [] and seen[0][1] > 100_000
    assert os.listdir(folder) == []  # consumed, nothing left aside
