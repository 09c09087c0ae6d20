// The compose form's live eligible count: asks the server again whenever the topic or the audience
// filter changes. A file, not inline script: the staff pages' policy allows scripts from this origin only.
"use strict";
(function () {
  var box = document.getElementById("audience-count");
  var form = box && box.closest("form");
  if (!form) { return; }
  var shown = box.querySelector("strong");
  var timer = null;
  var AUDIENCE = ["topic", "relationships", "locales", "companies", "sources", "created_after", "created_before",
                  "interacted_after", "interacted_before"];
  function refresh() {
    var params = new URLSearchParams();
    params.set("topic", form.elements.topic.value);
    form.querySelectorAll("input[name=relationships]:checked").forEach(function (box) {
      params.append("relationships", box.value);
    });
    ["locales", "companies", "sources", "created_after", "created_before", "interacted_after",
     "interacted_before"].forEach(function (name) {
      if (form.elements[name] && form.elements[name].value) { params.set(name, form.elements[name].value); }
    });
    fetch(box.dataset.url + "?" + params.toString(), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        shown.textContent = answer.error ? answer.error : answer.count.toLocaleString(document.documentElement.lang || "en");
      })
      .catch(function () { shown.textContent = "—"; });
  }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 250); }
  form.addEventListener("change", function (event) {
    if (AUDIENCE.indexOf(event.target.name) >= 0) { later(); }
  });
  ["locales", "companies", "sources"].forEach(function (name) {
    if (form.elements[name]) { form.elements[name].addEventListener("input", later); }
  });
})();
