// hitl inbox: live updates (server-sent events) and the Modify form's checks in the browser.
// Everything also works without this script; the server checks every form again.
"use strict";

function say(text) {
  const notice = document.getElementById("notice");
  if (notice) notice.textContent = text;
}

async function refresh(live) {
  const answer = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!answer.ok) return;
  const page = new DOMParser().parseFromString(await answer.text(), "text/html");
  const fresh = page.getElementById("live");
  if (fresh) live.replaceWith(fresh);
}

function typing(live) {
  const active = document.activeElement;
  return active && live.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
}

function onChange(change) {
  const live = document.getElementById("live");
  if (!live) return;
  if (live.dataset.refresh === "detail") {
    if (change.request_id !== live.dataset.request) return;
    if (change.state === "pending" && typing(live)) {
      say("This request changed while you were typing; reload to see it.");
      return;
    }
    say(`This request is now ${change.state}.`);
  } else if (change.state !== "pending") {
    say(`${change.request_id} is now ${change.state}.`);
  }
  refresh(live);
}

function listen() {
  const url = document.body.dataset.live;
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  source.addEventListener("change", (event) => {
    try { onChange(JSON.parse(event.data)); } catch (err) { /* a malformed event changes nothing */ }
  });
}

function problem(field) {
  if (field.dataset.json && field.value.trim() !== "") {
    try { JSON.parse(field.value); } catch (err) { return "not valid JSON"; }
  }
  const v = field.validity;
  if (v.valueMissing) return "needs a value (it cannot be emptied)";
  if (v.badInput || v.typeMismatch) return "not a valid " + (field.type === "number" ? "number" : "value");
  if (v.rangeUnderflow) return `must be at least ${field.min}`;
  if (v.rangeOverflow) return `must be at most ${field.max}`;
  if (v.stepMismatch) return "must be a whole number";
  if (v.tooLong) return `at most ${field.maxLength} characters`;
  if (v.patternMismatch) return `must match ${field.pattern}`;
  return "";
}

function checkModify(form) {
  let first = null;
  for (const field of form.querySelectorAll("[name^='p.']")) {
    if (field.type === "hidden") continue;
    const text = problem(field);
    const box = field.closest(".field");
    const out = box && box.querySelector(".field-error");
    if (out) out.textContent = text;
    if (box) box.classList.toggle("invalid", Boolean(text));
    field.setAttribute("aria-invalid", text ? "true" : "false");
    if (out && text) field.setAttribute("aria-describedby", out.id);
    if (text && !first) first = field;
  }
  if (first) first.focus();
  return !first;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id === "modify-form" && !checkModify(form)) event.preventDefault();
});

listen();
