"""The worker's pipeline run in-process: claim, render, save, fencing, reconciler."""
from __future__ import annotations

import errno
import io
import time
from datetime import timedelta

import pytest
from PIL import Image

from portal.models import RATIOS, Campaign, User, Variant, db, utcnow
from worker import cropping, imaging, leases, outputs, pipeline, reconciler
from factories import basic, brief, jpeg_bytes


def campaign(app, source_type="upload", data: bytes | None = None, **fields) -> Campaign:
    owner = db.session.execute(db.select(User).filter_by(username="alice")).scalar_one()
    row = Campaign(owner_id=owner.id, name="c", description="d", target_market="t",
                   campaign_message="m", products_description="p", source_type=source_type, **fields)
    db.session.add(row)
    db.session.commit()
    if data is not None:
        store = app.extensions["storage"]
        store.write(store.source_path(row.id), data)
    return row


def test_upload_renders_three_variants_and_completes(app):
    row = campaign(app, data=jpeg_bytes((1600, 1200)))
    pipeline.process(row.id, "task-1")
    db.session.refresh(row)
    assert (row.status, row.progress, row.attempt, row.error_message) == ("completed", 100, 1, None)
    assert (row.source_width, row.source_height) == (1600, 1200)
    assert {"fetch_ms", "decode_ms", "total_ms"} <= set(row.timings)
    store = app.extensions["storage"]
    sizes = {}
    for v in row.variants:
        with Image.open(store.variant_path(row.id, v.ratio)) as im:
            sizes[v.ratio] = im.size
            assert im.format == "JPEG" and not im.getexif()
        assert v.bytes == store.variant_path(row.id, v.ratio).stat().st_size
        assert store.variant_path(row.id, v.ratio, preview=True).is_file()
    assert sizes == {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}
    assert store.source_preview_path(row.id).is_file()
    assert not [p for p in store.campaign_dir(row.id).iterdir() if p.name.startswith(".tmp")]


def test_focal_point_moves_the_crop(app):
    row = campaign(app, data=jpeg_bytes((1600, 1200)), focal_x=0.0, focal_y=0.5)
    pipeline.process(row.id, "task-1")
    square = db.session.execute(db.select(Variant).filter_by(campaign_id=row.id, ratio="1:1")).scalar_one()
    assert (square.crop_x, square.crop_y, square.crop_w, square.crop_h) == (0, 0, 1200, 1200)
    assert square.crop_reason == "focal"


def test_local_source_is_read_from_the_import_folder(app):
    with open(app.config["IMPORT_DIR"] + "/beach.jpg", "wb") as f:
        f.write(jpeg_bytes((1200, 1600)))
    row = campaign(app, source_type="local", source_path="beach.jpg")
    pipeline.process(row.id, "task-1")
    db.session.refresh(row)
    assert row.status == "completed" and (row.source_width, row.source_height) == (1200, 1600)


@pytest.mark.parametrize("data, words", [
    (jpeg_bytes()[:300], "damaged or incomplete"),
    (b"GIF89a" + b"\0" * 64, "not a JPEG, PNG or WebP"),
])
def test_undecodable_image_fails_with_a_reason(app, data, words):
    row = campaign(app, data=data)
    pipeline.process(row.id, "task-1")
    db.session.refresh(row)
    assert row.status == "failed"
    assert words in row.error_message and "Traceback" not in row.error_message
    assert row.variants == []


def test_missing_local_file_fails_with_a_reason(app):
    row = campaign(app, source_type="local", source_path="gone.jpg")
    pipeline.process(row.id, "task-1")
    db.session.refresh(row)
    assert row.status == "failed" and "no file 'gone.jpg'" in row.error_message


def test_a_second_delivery_does_not_run_again(app):
    row = campaign(app, data=jpeg_bytes())
    pipeline.process(row.id, "task-1")
    assert leases.claim(row.id, "task-2") is None
    db.session.refresh(row)
    assert (row.status, row.attempt) == ("completed", 1)


def test_a_live_run_is_not_taken_over_but_a_stale_one_is(app):
    row = campaign(app, data=jpeg_bytes())
    assert leases.claim(row.id, "task-1") == 1
    assert leases.claim(row.id, "task-2") is None  # heartbeat fresh: someone is working on it
    assert leases.claim(row.id, "task-1") == 2  # the same message redelivered (worker lost)
    row.heartbeat_at = utcnow() - timedelta(seconds=app.config["LEASE_SECONDS"] + 1)
    db.session.commit()
    assert leases.claim(row.id, "task-3") == 3


def test_a_superseded_run_cannot_write(app):
    row = campaign(app, data=jpeg_bytes())
    old = leases.claim(row.id, "task-1")
    row.heartbeat_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    new = leases.claim(row.id, "task-2")
    pipeline._run(row.id, new)
    with pytest.raises(leases.Fenced):
        leases.fenced_update(row.id, old, status="failed", error_message="late zombie write")
    db.session.refresh(row)
    assert (row.status, row.attempt, row.error_message) == ("completed", 2, None)


def test_exhausted_attempts_end_failed(app):
    row = campaign(app, data=jpeg_bytes(), status="processing", attempt=app.config["MAX_ATTEMPTS"],
                   heartbeat_at=utcnow() - timedelta(hours=1))
    assert leases.claim(row.id, "task-9") is None
    db.session.refresh(row)
    assert row.status == "failed" and "stopped unexpectedly" in row.error_message


def test_reconciler_enqueues_lost_rows_and_fails_exhausted_ones(app):
    old = utcnow() - timedelta(hours=1)
    never_sent = campaign(app, data=jpeg_bytes(), created_at=old)
    just_created = campaign(app, data=jpeg_bytes())
    silent = campaign(app, data=jpeg_bytes(), status="processing", attempt=1, heartbeat_at=old,
                      enqueued_at=old - timedelta(minutes=1))
    dead = campaign(app, data=jpeg_bytes(), status="processing", heartbeat_at=old,
                    attempt=app.config["MAX_ATTEMPTS"])
    assert reconciler.reconcile() == {"enqueued": 2, "failed": 1}
    for row in (never_sent, just_created, silent, dead):
        db.session.refresh(row)
    assert never_sent.enqueued_at is not None and silent.enqueued_at > old
    assert just_created.enqueued_at is None  # the web request may still be enqueueing it
    assert dead.status == "failed"
    assert reconciler.reconcile() == {"enqueued": 0, "failed": 0}  # nothing is sent twice


def test_exif_rotated_upload_is_reported_in_oriented_pixels(app):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (1600, 1200), (10, 200, 10)).save(buf, "JPEG", exif=exif)
    row = campaign(app, data=buf.getvalue())
    pipeline.process(row.id, "task-1")
    db.session.refresh(row)
    assert (row.source_width, row.source_height) == (1200, 1600)


def test_a_campaign_deleted_while_saving_leaves_no_files(app, monkeypatch, caplog):
    row = campaign(app, data=jpeg_bytes())
    store = app.extensions["storage"]
    save = outputs.save

    def save_then_user_deletes(campaign_id, attempt, rendering):
        store.delete(campaign_id)  # the web request's delete: files first...
        db.session.execute(db.delete(Campaign).where(Campaign.id == campaign_id))
        db.session.commit()
        save(campaign_id, attempt, rendering)  # ...then our writes recreate the folder

    monkeypatch.setattr(outputs, "save", save_then_user_deletes)
    campaign_id = row.id
    pipeline.process(campaign_id, "task-1")
    assert not store.campaign_dir(campaign_id).exists()
    assert db.session.query(Variant).count() == 0
    assert "crashed" not in caplog.text


# --- fixes forced by the fault suite (tests/integration/test_faults_e2e.py) ---------------------

def test_the_heartbeat_keeps_a_long_run_leased(app, monkeypatch):
    app.config["LEASE_SECONDS"] = 2  # a beat every 0.5 s
    row = campaign(app, data=jpeg_bytes())
    fetch, beats = pipeline.sources.fetch, []

    def slow_fetch(c):
        for _ in range(3):  # 1.5 s without a single write of the run's own
            time.sleep(0.5)
            with db.engine.connect() as conn:
                beats.append(conn.execute(db.select(Campaign.heartbeat_at).where(Campaign.id == row.id)).scalar())
        return fetch(c)

    monkeypatch.setattr(pipeline.sources, "fetch", slow_fetch)
    pipeline.process(row.id, "task-1")
    assert len(set(beats)) >= 2, f"the heartbeat did not move during the fetch: {beats}"
    db.session.refresh(row)
    assert (row.status, row.attempt) == ("completed", 1)


def test_a_stale_runs_outputs_never_go_live(app):
    row = campaign(app, data=jpeg_bytes((1600, 1200), color=(20, 200, 20)))
    store = app.extensions["storage"]
    stale = leases.claim(row.id, "task-1")
    late = imaging.render(jpeg_bytes((1600, 1200), color=(200, 20, 200)), place=cropping.place,
                          max_pixels=10**8, max_side=20_000)
    row.heartbeat_at = utcnow() - timedelta(hours=1)  # the stale run froze; another takes over
    db.session.commit()
    pipeline.process(row.id, "task-2")
    live = {p.name: p.read_bytes() for p in store.campaign_dir(row.id).iterdir()}

    outputs.save(row.id, stale, late)  # it wakes up mid-save...
    with pytest.raises(leases.Fenced):
        pipeline._finish(row.id, stale, dict.fromkeys(RATIOS, "auto"), late, {}, time.perf_counter())
    pipeline._superseded(row.id, stale)
    assert {p.name: p.read_bytes() for p in store.campaign_dir(row.id).iterdir()} == live
    db.session.refresh(row)
    assert (row.status, row.attempt) == ("completed", 2)


def test_leftovers_of_a_killed_run_are_removed_by_the_next_claim(app):
    row = campaign(app, data=jpeg_bytes())
    folder = app.extensions["storage"].campaign_dir(row.id)
    (folder / ".attempt-1").mkdir()
    (folder / ".attempt-1" / "1x1.jpg").write_bytes(b"half")
    (folder / ".tmp-abc").write_bytes(b"half")
    pipeline.process(row.id, "task-1")
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_full_disk_retries_later_then_fails_in_words(app, monkeypatch):
    row = campaign(app, data=jpeg_bytes())
    store = app.extensions["storage"]
    write = store.write

    def full(path, data):
        if ".attempt-" in str(path) and path.name != "source.preview.jpg":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(store, "write", full)
    for attempt in range(1, app.config["MAX_ATTEMPTS"]):
        with pytest.raises(pipeline.RetryLater):
            pipeline.process(row.id, f"task-{attempt}")
        db.session.refresh(row)
        assert (row.status, row.stage, row.attempt) == ("pending", "waiting to retry", attempt)
        assert "storage is full" in row.error_message and row.enqueued_at > utcnow()
        assert {p.name for p in store.campaign_dir(row.id).iterdir()} == {"source"}
    pipeline.process(row.id, "task-last")
    db.session.refresh(row)
    assert row.status == "failed" and "storage is full" in row.error_message
    assert "Traceback" not in row.error_message and row.variants == []
    assert {p.name for p in store.campaign_dir(row.id).iterdir()} == {"source"}


def test_the_reconciler_resends_a_silent_run_whose_resend_was_lost_too(app):
    old = utcnow() - timedelta(hours=1)
    silent = campaign(app, data=jpeg_bytes(), status="processing", attempt=1, heartbeat_at=old,
                      enqueued_at=old + timedelta(minutes=1))  # re-sent after the beat stopped; lost again
    assert reconciler.reconcile() == {"enqueued": 1, "failed": 0}
    db.session.refresh(silent)
    assert silent.enqueued_at > old + timedelta(minutes=30)


def test_a_full_disk_at_upload_is_503_with_retry_after(app, client, monkeypatch):
    store = app.extensions["storage"]

    def full(path, chunks):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_atomically", full)  # every file write, the upload's included
    response = client.post("/api/campaigns", headers=basic("alice"), content_type="multipart/form-data", data={
        **{k: v for k, v in brief().items() if k != "image_metadata"},
        "image": (io.BytesIO(jpeg_bytes()), "beach.jpg", "image/jpeg")})
    assert response.status_code == 503 and response.headers["Retry-After"], response.get_data(as_text=True)
    assert "storage is full" in response.get_json()["message"]
    assert db.session.query(Campaign).count() == 0
