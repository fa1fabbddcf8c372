"""/metrics (admins only), HTTP instruments, scrape-time gauges, and the request id in logs and tasks."""
from __future__ import annotations

import logging

import sqlalchemy as sa
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from portal import logs, metrics
from portal.models import Campaign, db
from factories import basic, brief


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics", headers=basic("root"))
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_needs_login_and_an_admin(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=basic("alice")).status_code == 403
    assert client.get("/metrics", headers=basic("root")).status_code == 200


def test_requests_are_counted_and_timed_by_endpoint(client):
    labels = {"method": "GET", "endpoint": "health.healthz"}
    before_count = value("portal_http_requests_total", status="200", **labels)
    before_hist = value("portal_http_request_duration_seconds_count", status_class="2xx", **labels)
    before_401 = value("portal_http_requests_total", method="GET", endpoint="views.dashboard", status="401")
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 401  # refused by login: still counted, by endpoint
    client.get("/no/such/page/123", headers=basic("alice"))
    samples = scrape(client)
    key = tuple(sorted({**labels, "status": "200"}.items()))
    assert samples[("portal_http_requests_total", key)] == before_count + 3
    hist_key = tuple(sorted({**labels, "status_class": "2xx"}.items()))
    assert samples[("portal_http_request_duration_seconds_count", hist_key)] == before_hist + 3
    assert samples[("portal_http_request_duration_seconds_bucket", tuple(sorted(hist_key + (("le", "+Inf"),))))] >= 3
    assert value("portal_http_requests_total", method="GET", endpoint="views.dashboard", status="401") \
        == before_401 + 1
    assert not any("/no/such/page" in str(labels) for _, labels in samples)  # never raw paths
    assert any(dict(labels).get("endpoint") == "unmatched" for _, labels in samples)


def test_campaigns_by_status_gauge_matches_the_database(client, app):
    client.post("/api/campaigns", json=brief(), headers=basic("alice"))  # import dir is empty: 422
    owner = db.session.execute(sa.text("SELECT id FROM users WHERE username='alice'")).scalar_one()
    for status in ("pending", "completed", "completed", "failed"):
        db.session.add(Campaign(owner_id=owner, name="x", description="d", target_market="t",
                                campaign_message="m", products_description="p", source_type="local",
                                source_path="a.jpg", status=status))
    db.session.commit()
    samples = scrape(client)
    expected = dict(db.session.execute(sa.select(Campaign.status, sa.func.count())
                                       .group_by(Campaign.status)).all())
    for status in ("pending", "processing", "completed", "failed"):
        assert samples[("portal_campaigns", (("status", status),))] == expected.get(status, 0)
    assert samples[("portal_campaigns", (("status", "completed"),))] == 2
    assert ("portal_queue_depth", (("queue", "celery"),)) in samples
    assert ("portal_db_pool_checked_out", ()) in samples
    assert ("portal_storage_bytes", ()) in samples


def test_storage_bytes_are_cached(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 10)
    assert metrics.storage_usage(str(tmp_path)) == (10, 1)
    (tmp_path / "g").write_bytes(b"y" * 5)
    assert metrics.storage_usage(str(tmp_path)) == (10, 1)  # within the cache window
    assert metrics.storage_usage(str(tmp_path), max_age=0) == (15, 2)


def test_a_broken_database_does_not_fail_the_scrape(client):
    scrape(client)  # authenticate once, so the user check does not need the dropped table later
    before = value("portal_scrape_errors_total", family="campaigns")
    db.session.execute(sa.text("DROP TABLE variants"))
    db.session.execute(sa.text("DROP TABLE campaigns"))
    db.session.commit()
    samples = scrape(client)
    assert not any(name == "portal_campaigns" for name, _ in samples)
    assert samples[("portal_scrape_errors_total", (("family", "campaigns"),))] == before + 1
    assert ("portal_storage_bytes", ()) in samples  # the other families are still there


def test_request_id_is_echoed_or_generated_and_logged(client, caplog):
    caplog.handler.addFilter(logs.RequestIdFilter())
    caplog.set_level(logging.INFO)
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.x_y"})
    assert response.headers["X-Request-ID"] == "abc-123.x_y"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id <with> spaces"})
    rid = generated.headers["X-Request-ID"]
    assert rid != "bad id <with> spaces" and logs.sane(rid) == rid
    assert client.get("/healthz", headers={"X-Request-ID": "x" * 65}).headers["X-Request-ID"] != "x" * 65
    assert client.get("/").headers["X-Request-ID"]  # refused requests get one too
    # A log line written during a request carries its id (the broker is down: a warning is logged).
    app = client.application
    app.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"
    response = client.post("/api/campaigns", json=_local_brief(app), headers={
        **basic("alice"), "X-Request-ID": "req-42"})
    assert response.status_code in (201, 202)
    lines = [r for r in caplog.records if "not enqueued" in r.getMessage()]
    assert lines and all(r.request_id == "req-42" for r in lines)
    assert logs.current_request_id() is None  # cleared after the request
    assert "Authorization" not in caplog.text and "alice-pw" not in caplog.text


def test_request_id_is_sent_as_a_celery_header(client, app, monkeypatch):
    sent = []
    celery = app.extensions["celery"]
    monkeypatch.setattr(celery, "send_task", lambda *args, **kwargs: sent.append(kwargs))
    response = client.post("/api/campaigns", json=_local_brief(app),
                           headers={**basic("alice"), "X-Request-ID": "trace-7"})
    assert response.status_code in (201, 202)
    assert sent and sent[0]["headers"] == {"request_id": "trace-7"}


def test_task_signals_set_the_request_id_for_the_task_logs():
    class Request:
        id = "task-uuid"
        request_id = "trace-9"
        headers = {"request_id": "trace-9"}

    class Task:
        request = Request()

    token = logs.task_started(Task())
    assert logs.current_request_id() == "trace-9"
    record = logging.LogRecord("worker.pipeline", logging.INFO, __file__, 1, "hello", None, None)
    logs.RequestIdFilter().filter(record)
    assert record.request_id == "trace-9"
    logs.task_finished(token)
    assert logs.current_request_id() is None
    Request.request_id, Request.headers = None, None
    token = logs.task_started(Task())  # no header (beat): the task id stands in
    assert logs.current_request_id() == "task-uuid"
    logs.task_finished(token)


def test_stage_timings_are_observed():
    before = value("portal_task_stage_seconds_count", stage="save")
    metrics.observe_timings({"fetch_ms": 10.0, "save_ms": 5.0, "render_total_ms": 3.0, "odd": "x"})
    assert value("portal_task_stage_seconds_count", stage="save") == before + 1
    assert REGISTRY.get_sample_value("portal_task_stage_seconds_count", {"stage": "render_total"}) is None


def _local_brief(app) -> dict:
    from pathlib import Path

    from factories import jpeg_bytes
    (Path(app.config["IMPORT_DIR"]) / "beach.jpg").write_bytes(jpeg_bytes())
    return brief()
