// Progressive enhancement only: every page works without JavaScript.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll("input[name=pick]")) box.checked = all.checked;
    });
  }
  for (const form of document.querySelectorAll("form.action-write_off, form.action-recall")) {
    form.addEventListener("submit", (event) => {
      // The page says it in its language (base.html); English if it does not.
      const question = document.body.dataset.irreversible || "This cannot be undone. Continue?";
      if (!window.confirm(question)) event.preventDefault();
    });
  }
});
