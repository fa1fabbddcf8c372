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

  // htmx does not swap error responses: say what happened instead of doing nothing.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var message = "The server answered " + xhr.status + ".";
    if (xhr.status === 413) message = "That file is larger than the upload limit.";
    else if (xhr.status === 415) message = "That file is not a JPEG, PNG or WebP image.";
    else if (xhr.status === 400) message = "The page has expired; reload it and try again.";
    else if (xhr.status === 404) message = "This campaign no longer exists.";
    else if (xhr.status === 503) message = "The service is busy or a dependency is down; it will retry.";
    flash(message);
  });
  document.addEventListener("htmx:sendError", function () {
    flash("The portal cannot be reached; check your connection.");
  });
})();
