// The page's uploads, checked before Gradio sends them (prompts/upload_guard.py): a file over the
// limit, chosen in any file input of the page or dropped on it, is stopped here and reported to
// the server with the 'too_big' event, which answers with the app's own message; Gradio's
// listeners never see it, so the image, prompts and objects stay as they were. A file dropped on
// a drop target (the instant view), or pasted while one is shown, goes to its upload button's
// input, as if chosen there.
//
// Runs as the body of a gr.HTML js_on_load: `trigger` and `props` are Gradio's; props.value is
// {limit: bytes, drops: {target element id: upload button element id}}.

// The listeners are the page's, added once; a later mount of this component only updates what
// they use.
window.samUploadGuard = { trigger, props };
if (!window.samUploadGuardListening) {
  window.samUploadGuardListening = true;
  const guard = () => window.samUploadGuard;
  const config = () => guard().props.value || { limit: Infinity, drops: {} };
  const tooBig = (files) => Array.from(files || []).find((file) => file.size > config().limit);
  const refuse = (file) => guard().trigger("too_big", { name: file.name, size: file.size });
  // An upload button's file input: Gradio renders it just before the button.
  const fileInput = (button) => {
    const element = document.getElementById(button);
    if (!element) return null;
    const before = element.previousElementSibling;
    if (before && before.matches("input[type=file]")) return before;
    return element.querySelector("input[type=file]");
  };
  // The drop target under an event, and the file input its files go to.
  const dropTarget = (event) => {
    for (const [target, button] of Object.entries(config().drops)) {
      const over = event.target.closest && event.target.closest(`#${target}`);
      const input = over && fileInput(button);
      if (input) return { over, input };
    }
    return null;
  };
  // Gradio's upload areas stop showing a drag over them on their drop, which they do not get
  // here: a drag leaving them does the same.
  const unhighlight = (target) => {
    const block = target.closest(".block") || target;
    for (const area of [target, ...block.querySelectorAll("[aria-dropeffect]")]) {
      area.dispatchEvent(new DragEvent("dragleave", { relatedTarget: null }));
    }
  };
  const carriesFiles = (event) =>
    event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  // The first file, as if chosen in `input`; refused there if over the limit.
  const choose = (files, input) => {
    const chosen = new DataTransfer();
    chosen.items.add(files[0]); // one image at a time
    input.files = chosen.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };
  // The file input of the drop target on show, if one is.
  const shownTarget = () => {
    for (const [target, button] of Object.entries(config().drops)) {
      const element = document.getElementById(target);
      if (element && element.getClientRects().length) return fileInput(button);
    }
    return null;
  };
  const typing = (element) =>
    element &&
    (element.isContentEditable ||
      element.tagName === "TEXTAREA" ||
      (element.tagName === "INPUT" && element.type !== "file"));

  // Capture phase, on the window: before the input's or the upload area's own listeners.
  window.addEventListener(
    "change",
    (event) => {
      const input = event.target;
      if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
      const file = tooBig(input.files);
      if (!file) return;
      event.stopImmediatePropagation();
      input.value = ""; // the same file chosen again is checked again
      refuse(file);
    },
    true,
  );
  window.addEventListener(
    "dragover",
    (event) => {
      const drop = carriesFiles(event) && dropTarget(event);
      if (!drop) return;
      event.preventDefault(); // a drop is welcome here
      event.dataTransfer.dropEffect = "copy";
      drop.over.classList.add("sam-drop-over");
    },
    true,
  );
  window.addEventListener(
    "dragleave",
    (event) => {
      const drop = dropTarget(event);
      if (drop && !drop.over.contains(event.relatedTarget)) {
        drop.over.classList.remove("sam-drop-over");
      }
    },
    true,
  );
  window.addEventListener(
    "drop",
    (event) => {
      const files = event.dataTransfer && event.dataTransfer.files;
      if (!files || !files.length) return;
      const drop = dropTarget(event);
      const file = tooBig(files);
      if (!drop && !file) return; // an upload area's own drop, within the limit
      event.preventDefault();
      event.stopImmediatePropagation();
      if (drop) drop.over.classList.remove("sam-drop-over");
      else unhighlight(event.target);
      if (file) {
        refuse(file);
        return;
      }
      choose(files, drop.input);
    },
    true,
  );
  // An image pasted (outside a text field) while a drop target is shown: its next image.
  window.addEventListener(
    "paste",
    (event) => {
      const files = event.clipboardData && event.clipboardData.files;
      const input = files && files.length && !typing(document.activeElement) && shownTarget();
      if (!input) return;
      event.preventDefault();
      choose(files, input); // the change listener above refuses it if over the limit
    },
    true,
  );
}
