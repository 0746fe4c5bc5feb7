// The admin view works without this file; it only adds keyboard shortcuts.
// "/" focuses the search box (as on GitHub or Gmail), Escape leaves a field.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  var typing = target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    var box = document.querySelector("[data-hotkey='/']");
    if (box) { event.preventDefault(); box.focus(); box.select(); }
  } else if (event.key === "Escape" && typing) {
    target.blur();
  }
});
