// Copy buttons of the capture page: <button data-copy="ID"> copies the text of the element
// with that id (a permalink, a digest, the whole citation). The clipboard API needs a secure
// context (loopback counts as one); elsewhere the text is selected and copied the old way.
"use strict";

document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
  if (!button) {
    return;
  }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) {
    return;
  }
  var label = button.getAttribute("data-label") || button.textContent;
  button.setAttribute("data-label", label);

  function said(ok) {
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    window.setTimeout(function () { button.textContent = label; }, 1500);
  }

  function selectAndCopy() {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    said(ok);
  }

  var text = source.textContent.trim();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { said(true); }, selectAndCopy);
  } else {
    selectAndCopy();
  }
});
