// The upload page's progress (templates upload.html): the same multipart POST to /upload, sent with
// XMLHttpRequest so the <progress> bar shows how much of the archive has gone. Without JavaScript the form
// posts as usual and the browser shows its own progress; the server's answer is the same either way.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", function (event) {
    if (!form.checkValidity()) return;
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.floor((100 * e.loaded) / e.total);
      bar.value = percent;
      status.textContent = percent < 100 ? "Uploading: " + percent + "%" : "Uploaded; checking the bundle…";
    });
    xhr.addEventListener("load", function () {
      var landed = xhr.responseURL ? new URL(xhr.responseURL, location.href) : null;
      if (landed && landed.pathname !== new URL(form.action, location.href).pathname) {
        location.assign(landed.href); // accepted: the deploy form (the 303 the browser would have followed)
        return;
      }
      document.open(); // refused: the server's page with its problems, as a plain form post would show it
      document.write(xhr.responseText);
      document.close();
    });
    xhr.addEventListener("error", function () {
      status.textContent = "The upload did not reach the server: check the connection, then upload again.";
      button.disabled = false;
    });
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading: 0%";
    xhr.send(new FormData(form));
  });
})();
