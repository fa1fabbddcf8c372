"""The row is the outbox: a broker outage at submit loses nothing (MariaDB + Redis stack).

A second, short-lived gunicorn shares the main stack's database but points at a broker
that is not there; the main stack (its beat runs the reconciler every 2 s, its worker
renders) must pick the campaign up. The main stack itself is not disturbed.
"""
from __future__ import annotations

import time

import it_images
import pytest
from it_stack import PASSWORDS, Api, Proc, Stack, free_port, gunicorn_args, mysql_execute, stop_all, wait_http

DEAD_BROKER = "redis://127.0.0.1:1/15"  # nothing listens on port 1


@pytest.fixture
def dead_broker_web(mariadb_stack: Stack, tmp_path):
    port = free_port()
    env = {**mariadb_stack.env, "CELERY_BROKER_URL": DEAD_BROKER}
    web = Proc("gunicorn-dead-broker", gunicorn_args(port, tmp_path / "gunicorn.ctl", workers=1),
               env, mariadb_stack.log_dir)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", 60, [web])
        yield base, web
    finally:
        stop_all([web])


@pytest.mark.timeout(120)
def test_submit_with_the_broker_down_answers_202_and_the_reconciler_recovers_it(
        mariadb_stack: Stack, dead_broker_web):
    base, web = dead_broker_web
    stack = mariadb_stack
    alice = stack.api("alice")

    outage = Api(base, "alice", PASSWORDS["alice"])
    try:
        ready = outage.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["broker"].startswith("unavailable")
        assert ready.json()["checks"]["database"] == "ok"

        started = time.monotonic()
        r = outage.upload(it_images.small_photo(seed=11), filename="outage.jpg")
        took = time.monotonic() - started
    finally:
        outage.close()
    assert r.status_code == 202, f"{r.status_code} {r.text}\n{web.tail()}"
    assert took < 10, f"the submit waited {took:.1f} s for the dead broker"
    campaign_id = r.json()["id"]
    assert r.json()["status"] == "pending"

    rows = mysql_execute("SELECT status, enqueued_at, attempt FROM campaigns WHERE id = %s",
                         stack.notes["database"], (campaign_id,))
    assert rows == [("pending", None, 0)], f"the row should be an un-sent outbox entry: {rows}"
    assert "not enqueued, broker unavailable" in web.output()

    # The main stack's reconciler sends it (rows never enqueued, older than 5 s) and it completes.
    final = alice.wait(campaign_id, timeout=60, interval=0.2).body
    assert final["status"] == "completed", final
    assert [v["ratio"] for v in final["variants"]] == ["1:1", "9:16", "16:9"]
    rows = mysql_execute("SELECT enqueued_at FROM campaigns WHERE id = %s", stack.notes["database"],
                         (campaign_id,))
    assert rows[0][0] is not None, "the reconciler did not record that it enqueued the campaign"
