"""The worker's pipeline run in-process: claim, render, save, fencing, reconciler."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image

from portal.models import Campaign, User, Variant, db, utcnow
from worker import pipeline
from factories import jpeg_bytes


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
    assert pipeline.claim(row.id, "task-2") is None
    db.session.refresh(row)
    assert (row.status, row.attempt) == ("completed", 1)


def test_a_live_run_is_not_taken_over_but_a_stale_one_is(app):
    row = campaign(app, data=jpeg_bytes())
    assert pipeline.claim(row.id, "task-1") == 1
    assert pipeline.claim(row.id, "task-2") is None  # heartbeat fresh: someone is working on it
    assert pipeline.claim(row.id, "task-1") == 2  # the same message redelivered (worker lost)
    row.heartbeat_at = utcnow() - timedelta(seconds=app.config["LEASE_SECONDS"] + 1)
    db.session.commit()
    assert pipeline.claim(row.id, "task-3") == 3


def test_a_superseded_run_cannot_write(app):
    row = campaign(app, data=jpeg_bytes())
    old = pipeline.claim(row.id, "task-1")
    row.heartbeat_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    new = pipeline.claim(row.id, "task-2")
    pipeline._run(row.id, new)
    with pytest.raises(pipeline.Fenced):
        pipeline._fenced_update(row.id, old, status="failed", error_message="late zombie write")
    db.session.refresh(row)
    assert (row.status, row.attempt, row.error_message) == ("completed", 2, None)


def test_exhausted_attempts_end_failed(app):
    row = campaign(app, data=jpeg_bytes(), status="processing", attempt=app.config["MAX_ATTEMPTS"],
                   heartbeat_at=utcnow() - timedelta(hours=1))
    assert pipeline.claim(row.id, "task-9") is None
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
    assert pipeline.reconcile() == {"enqueued": 2, "failed": 1}
    for row in (never_sent, just_created, silent, dead):
        db.session.refresh(row)
    assert never_sent.enqueued_at is not None and silent.enqueued_at > old
    assert just_created.enqueued_at is None  # the web request may still be enqueueing it
    assert dead.status == "failed"
    assert pipeline.reconcile() == {"enqueued": 0, "failed": 0}  # nothing is sent twice


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
    save = pipeline._save_files

    def save_then_user_deletes(campaign_id, rendering):
        store.delete(campaign_id)  # the web request's delete: files first...
        db.session.execute(db.delete(Campaign).where(Campaign.id == campaign_id))
        db.session.commit()
        save(campaign_id, rendering)  # ...then our writes recreate the folder

    monkeypatch.setattr(pipeline, "_save_files", save_then_user_deletes)
    campaign_id = row.id
    pipeline.process(campaign_id, "task-1")
    assert not store.campaign_dir(campaign_id).exists()
    assert db.session.query(Variant).count() == 0
    assert "crashed" not in caplog.text
