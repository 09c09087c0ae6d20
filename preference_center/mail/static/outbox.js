// Grow the frame holding a mail's HTML body to the body's full height, so nothing (the footer links
// included) hides below a scroll bar. The frame is same-origin but runs no script of its own.
"use strict";
function fit(frame) {
  try {
    var doc = frame.contentDocument;
    if (!doc || !doc.documentElement) { return; }
    frame.style.height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0) + 16 + "px";
  } catch (e) { /* another origin: keep the stylesheet's height */ }
}
document.querySelectorAll("iframe.mail-html").forEach(function (frame) {
  frame.addEventListener("load", function () { fit(frame); });
  if (frame.contentDocument && frame.contentDocument.readyState === "complete") { fit(frame); }
  window.addEventListener("resize", function () { fit(frame); });
});
