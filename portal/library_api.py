"""The server import folder for scripts and the portal's picker: list images, show thumbnails."""
from __future__ import annotations

import hashlib
import os

from flask import abort, current_app, jsonify, request, send_file, url_for

from worker.imaging import ImageRejected, thumbnail

from . import library
from .api import bp, int_arg
from .schemas import Invalid
from .storage import storage


def folder_listing(folder: str, page: int, per_page: int | None) -> dict:
    """One page of a folder of the import library, as the API and the picker show it."""
    config = current_app.config
    per_page = min(per_page or config["PAGE_SIZE"], config["MAX_PAGE_SIZE"])
    try:
        folders, images = library.listing(config["IMPORT_DIR"], folder)
    except library.NotImportable as e:
        raise Invalid({"folder": str(e)}) from None
    chosen = images[(page - 1) * per_page: page * per_page]
    for image in chosen:
        image["thumbnail_url"] = url_for("api.library_thumbnail", path=image["path"])
    parent = os.path.dirname(folder.rstrip("/")) if folder else None
    return {"folder": folder, "parent": parent, "folders": folders, "images": chosen, "page": page,
            "per_page": per_page, "total": len(images), "pages": max(1, -(-len(images) // per_page))}


@bp.get("/library")
def list_library():
    return jsonify(folder_listing(request.args.get("folder", ""), int_arg("page", 1),
                                  int_arg("per_page", None)))


@bp.get("/library/thumbnail")
def library_thumbnail():
    """A cached, re-encoded thumbnail: the original bytes are never served."""
    config = current_app.config
    relative = request.args.get("path", "")
    try:
        path = library.resolve(config["IMPORT_DIR"], relative)
    except library.NotImportable as e:
        abort(404, str(e))
    status = path.stat()
    key = hashlib.sha256(f"{path}\0{status.st_mtime_ns}\0{status.st_size}".encode()).hexdigest()
    cached = storage().library_thumb_path(key)
    if not cached.is_file():
        try:
            data = library.read(config["IMPORT_DIR"], relative, config["MAX_CONTENT_LENGTH"])
            storage().write(cached, thumbnail(data, max_pixels=config["MAX_IMAGE_PIXELS"],
                                              max_side=config["MAX_IMAGE_SIDE"]))
        except (library.NotImportable, ImageRejected) as e:
            abort(422, str(e))
    return send_file(cached, mimetype="image/jpeg", conditional=True, max_age=3600)
