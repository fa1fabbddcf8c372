"""worker.imaging's engine: libvips set up for a worker pool, fed only the format Pillow sniffed and checked."""
from __future__ import annotations

import os
from io import BytesIO

import pytest
from PIL import Image

from worker import decoding, imaging


def encode(im: Image.Image, fmt: str) -> bytes:
    out = BytesIO()
    im.save(out, fmt)
    return out.getvalue()


@pytest.mark.skipif("VIPS_CONCURRENCY" in os.environ, reason="the environment chose libvips' threads")
def test_libvips_uses_one_thread_per_process():
    assert decoding.pyvips.concurrency_get() == 1


def spy_loaders(monkeypatch) -> list[tuple[str, dict]]:
    calls = []
    for fmt, load in list(decoding._LOADERS.items()):
        def spy(data, _fmt=fmt, _load=load, **options):
            calls.append((_fmt, options))
            return _load(data, **options)
        monkeypatch.setitem(decoding._LOADERS, fmt, spy)
    return calls


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_libvips_gets_the_sniffed_formats_own_loader_strictly(monkeypatch, fmt):
    calls = spy_loaders(monkeypatch)
    imaging.render(encode(Image.new("RGB", (300, 200), "red"), fmt))
    assert calls == [(fmt, {"access": "sequential", "fail_on": "error"})]


def test_a_png_signature_on_other_bytes_never_reaches_a_decoder(monkeypatch):
    calls = spy_loaders(monkeypatch)
    jpeg = encode(Image.new("RGB", (300, 200), "red"), "JPEG")
    with pytest.raises(imaging.ImageRejected, match="damaged or incomplete"):
        imaging.render(b"\x89PNG\r\n\x1a\n" + jpeg)
    assert calls == []


def test_running_out_of_memory_in_libvips_is_not_called_a_damaged_file(monkeypatch):
    def exhausted(data, **options):
        raise decoding.pyvips.Error("vips_tracked_malloc: out of memory --- size == 72MB")

    monkeypatch.setitem(decoding._LOADERS, "JPEG", exhausted)
    with pytest.raises(MemoryError):
        imaging.render(encode(Image.new("RGB", (300, 200), "red"), "JPEG"))
