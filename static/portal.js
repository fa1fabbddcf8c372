// The portal's only script: progressive enhancements on top of server-rendered pages.
// No inline handlers anywhere (the CSP forbids them): everything is delegated from document.
(function () {
  "use strict";

  var TYPES = ["image/jpeg", "image/png", "image/webp"];

  function flash(message) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { box.hidden = true; }, 8000);
  }

  function humanSize(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.round(bytes / 1024) + " KB";
  }

  // Check the chosen file before anything is sent, and show it with its dimensions.
  function showChosenFile(input) {
    var zone = input.parentElement.querySelector(".dropzone");
    var error = input.parentElement.querySelector(".dz-error");
    var preview = zone.querySelector(".dz-preview");
    var info = zone.querySelector(".dz-info");
    var file = input.files && input.files[0];
    error.hidden = true;
    zone.classList.remove("invalid", "has-file");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.hidden = true;
    info.textContent = "";
    if (!file) return;
    var problem = null;
    if (TYPES.indexOf(file.type) < 0) problem = "“" + file.name + "” is not a JPEG, PNG or WebP image.";
    else if (file.size > Number(zone.dataset.maxBytes)) {
      problem = "“" + file.name + "” is " + humanSize(file.size) + "; the limit is " +
        humanSize(Number(zone.dataset.maxBytes)) + ".";
    }
    if (problem) {
      input.value = "";
      error.textContent = problem;
      error.hidden = false;
      zone.classList.add("invalid");
      return;
    }
    preview.onload = function () {
      info.textContent = file.name + " · " + preview.naturalWidth + "×" + preview.naturalHeight +
        " px · " + humanSize(file.size);
      zone.classList.add("has-file");
    };
    preview.onerror = function () { info.textContent = file.name + " · " + humanSize(file.size); };
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    var upload = document.getElementById("src-upload");
    if (upload) upload.checked = true;
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("input[type=file][name=image]")) showChosenFile(event.target);
  });

  ["dragenter", "dragover"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      var zone = event.target.closest && event.target.closest(".dropzone");
      if (!zone) return;
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  document.addEventListener("dragleave", function (event) {
    var zone = event.target.closest && event.target.closest(".dropzone");
    if (zone) zone.classList.remove("dragging");
  });
  document.addEventListener("drop", function (event) {
    var zone = event.target.closest && event.target.closest(".dropzone");
    if (!zone) return;
    event.preventDefault();
    zone.classList.remove("dragging");
    var input = document.getElementById(zone.htmlFor);
    if (!event.dataTransfer.files.length) return;
    var transfer = new DataTransfer();  // only the first file: a campaign has one source
    transfer.items.add(event.dataTransfer.files[0]);
    input.files = transfer.files;
    showChosenFile(input);
  });

  // Upload progress for the campaign form.
  document.addEventListener("htmx:xhr:progress", function (event) {
    var bar = event.target.querySelector && event.target.querySelector(".upload-progress");
    if (!bar || !event.detail.lengthComputable) return;
    bar.hidden = false;
    bar.value = Math.round(100 * event.detail.loaded / event.detail.total);
  });

  // htmx does not swap error responses: say what happened instead of doing nothing. The
  // server's own sentence (the error page's #error-message, or a JSON body's message) is shown;
  // a polled panel keeps polling, and the notice goes once a request succeeds again.
  function serverMessage(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    try {
      if (type.indexOf("text/html") === 0) {
        var found = new DOMParser().parseFromString(xhr.responseText, "text/html")
          .getElementById("error-message");
        return found ? found.textContent.trim() : null;
      }
      if (type.indexOf("application/json") === 0) return JSON.parse(xhr.responseText).message || null;
    } catch (ignored) { /* an unreadable body: fall back to the status */ }
    return null;
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var message = "The server answered " + xhr.status + ".";
    if (xhr.status === 413) message = "That file is larger than the upload limit.";
    else if (xhr.status === 415) message = "That file is not a JPEG, PNG or WebP image.";
    else if (xhr.status === 400) message = "The page has expired; reload it and try again.";
    else if (xhr.status === 404) message = "This campaign no longer exists.";
    else if (xhr.status === 503) message = "The portal is temporarily unavailable; it will retry.";
    // 400/413/415 keep the sentences above (Werkzeug's own descriptions are generic).
    if ([400, 413, 415].indexOf(xhr.status) < 0) message = serverMessage(xhr) || message;
    flash(message);
    flash.failing = true;
    document.body.classList.add("degraded");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (!event.detail.successful || !flash.failing) return;
    flash.failing = false;
    document.body.classList.remove("degraded");
    var box = document.getElementById("flash");
    if (box) box.hidden = true;
  });
  document.addEventListener("htmx:sendError", function () {
    flash("The portal cannot be reached; check your connection.");
  });
})();

// The crop editor on the campaign page: click the picture to set the focal point, or pick a
// format and drag its box (aspect locked; the corner handle resizes). Changes go through htmx
// to the same recrop action as the form fallback, so CSRF headers and swaps work as elsewhere.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function point(svg, event) {
    var p = svg.createSVGPoint();
    p.x = event.clientX; p.y = event.clientY;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }
  function attr(el, name) { return parseFloat(el.getAttribute(name)); }
  function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

  function send(editor, values) {
    htmx.ajax("POST", editor.dataset.recropUrl,
      { source: editor, target: "#status-panel", swap: "outerHTML", values: values });
  }

  function select(editor, ratio) {
    var svg = editor.querySelector("svg.crops");
    editor.querySelectorAll(".pick").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.ratio === ratio));
    });
    svg.querySelectorAll("rect.handle").forEach(function (h) { h.remove(); });
    svg.querySelectorAll("rect.crop").forEach(function (r) {
      r.classList.toggle("editing", r.dataset.ratio === ratio);
      if (r.dataset.ratio !== ratio) return;
      var size = Math.max(attr(svg, "data-width"), attr(svg, "data-height")) / 30;
      var handle = document.createElementNS(SVG, "rect");
      handle.setAttribute("class", "handle " + r.getAttribute("class").split(" ")[1]);
      handle.setAttribute("width", size); handle.setAttribute("height", size);
      svg.appendChild(handle);
      place(r, handle);
    });
  }

  function place(rect, handle) {
    var size = attr(handle, "width");
    handle.setAttribute("x", attr(rect, "x") + attr(rect, "width") - size / 2);
    handle.setAttribute("y", attr(rect, "y") + attr(rect, "height") - size / 2);
  }

  document.addEventListener("click", function (event) {
    var pick = event.target.closest(".crop-editor .pick");
    if (pick) select(pick.closest(".crop-editor"), pick.dataset.ratio);
  });

  document.addEventListener("pointerdown", function (event) {
    var svg = event.target.closest && event.target.closest(".crop-editor svg.crops");
    if (!svg) return;
    event.preventDefault();
    var editor = svg.closest(".crop-editor");
    var rect = svg.querySelector("rect.crop.editing");
    var handle = svg.querySelector("rect.handle");
    var W = attr(svg, "data-width"), H = attr(svg, "data-height");
    var start = point(svg, event);
    var mode = event.target === handle ? "resize" : event.target === rect ? "move" : "focal";
    if (mode === "focal") {
      send(editor, { focal_x: clamp(start.x / W, 0, 1).toFixed(4), focal_y: clamp(start.y / H, 0, 1).toFixed(4) });
      return;
    }
    var box = { x: attr(rect, "x"), y: attr(rect, "y"), w: attr(rect, "width"), h: attr(rect, "height") };
    var aspect = box.w / box.h, moved = false;
    svg.setPointerCapture(event.pointerId);

    function onMove(e) {
      var p = point(svg, e), dx = p.x - start.x, dy = p.y - start.y, w, h;
      moved = true;
      if (mode === "move") {
        rect.setAttribute("x", clamp(box.x + dx, 0, W - box.w));
        rect.setAttribute("y", clamp(box.y + dy, 0, H - box.h));
      } else {
        w = clamp(box.w + dx, 32, W - box.x);
        h = w / aspect;
        if (box.y + h > H) { h = H - box.y; w = h * aspect; }
        rect.setAttribute("width", w); rect.setAttribute("height", h);
      }
      place(rect, handle);
    }
    function onUp() {
      svg.removeEventListener("pointermove", onMove);
      svg.removeEventListener("pointerup", onUp);
      if (!moved) return;
      send(editor, { ratio: rect.dataset.ratio, x: Math.round(attr(rect, "x")), y: Math.round(attr(rect, "y")),
                     w: Math.round(attr(rect, "width")), h: Math.round(attr(rect, "height")) });
    }
    svg.addEventListener("pointermove", onMove);
    svg.addEventListener("pointerup", onUp);
  });
})();
