// Progressive enhancement only: every page works without it.
// - buttons with data-copy copy their text to the clipboard;
// - the repository filter applies itself a moment after typing stops.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    button.classList.add("copied");
    setTimeout(() => button.classList.remove("copied"), 1200);
  } catch (e) {
    window.prompt("Copy:", button.dataset.copy);
  }
});
document.addEventListener("DOMContentLoaded", () => {
  const filter = document.getElementById("filter");
  if (!filter) return;
  let timer = null;
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => filter.form.requestSubmit(), 400);
  });
  if (filter.value) {
    filter.focus();
    filter.setSelectionRange(filter.value.length, filter.value.length);
  }
});
