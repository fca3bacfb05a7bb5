// Keyboard shortcuts for working the queue (progressive enhancement; every page works without).
//   /  find (the search box in the header)
//   j / k  next / previous: a row of the queue, or the next / previous mismatch of the list
//   o  open the chosen row of the queue (Enter too: the row's link has the focus)
//   u  back to the list          a  assign the mismatch to me          r  resolve: to the reason
//      of the first resolving action
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const typing = (el) =>
    el instanceof HTMLElement &&
    (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const follow = (id) => {
    const link = document.getElementById(id);
    if (link) link.click();
    return Boolean(link);
  };
  const rows = Array.from(document.querySelectorAll("table.queue tbody tr")).filter((row) =>
    row.querySelector("a.mismatch-link"),
  );
  let current = -1;
  const choose = (index) => {
    if (!rows.length) return false;
    if (current >= 0) rows[current].classList.remove("current");
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows[current].classList.add("current");
    rows[current].scrollIntoView({ block: "nearest" });
    rows[current].querySelector("a.mismatch-link").focus();
    return true;
  };
  const assignToMe = () => {
    const box = document.getElementById("mismatch-actions");
    const form = document.querySelector("form.action-assign");
    const select = form && form.querySelector("select[name=assignee]");
    if (!box || !select) return false;
    const me = box.dataset.me;
    if (!Array.from(select.options).some((o) => o.value === me)) return false;
    select.value = me;
    form.requestSubmit();
    return true;
  };
  const resolve = () => {
    const button = document.querySelector("#mismatch-actions form button.primary");
    const form = button ? button.form : null;
    const reason = form && form.querySelector("input[name=reason], textarea[name=reason]");
    if (!reason) return false;
    reason.focus();
    return true;
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    let done = false;
    switch (event.key) {
      case "/": {
        const box = document.getElementById("search-box");
        if (box) {
          box.focus();
          box.select();
          done = true;
        }
        break;
      }
      case "j":
        done = rows.length ? choose(current + 1) : follow("next-mismatch");
        break;
      case "k":
        done = rows.length ? choose(current - 1) : follow("previous-mismatch");
        break;
      case "o":
        if (current >= 0) {
          rows[current].querySelector("a.mismatch-link").click();
          done = true;
        }
        break;
      case "u":
        done = follow("back-to-list");
        break;
      case "a":
        done = assignToMe();
        break;
      case "r":
        done = resolve();
        break;
    }
    if (done) event.preventDefault();
  });
});
