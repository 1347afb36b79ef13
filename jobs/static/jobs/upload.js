// The upload form: a drop zone and paste target whose files go into the real
// <input type=file> (so the form posts them like picked ones, with or without htmx),
// thumbnails of the chosen files, and the measurements the preview quotes from before
// anything is uploaded. Everything here only informs early: the server decides.
(function () {
  const MAX_BYTES = 25 * 1024 * 1024;
  const HEADER_BYTES = 64 * 1024; // enough for a PNG's chunks before its pixels
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("images");
  const list = document.getElementById("file-list");
  if (!form || !zone || !input) return;
  let thumbs = []; // object URLs shown now, revoked when the list is redrawn
  let pasted = 0;

  function human(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(1) + " MB";
    return n >= 1024 ? Math.round(n / 1024) + " KB" : n + " bytes";
  }

  function ascii(bytes, start, length) {
    return String.fromCharCode(...bytes.subarray(start, start + length));
  }

  // The format from the file's first bytes (never its name), and whether it has
  // transparency, read the way the server's Pillow reads it: PNG colour type 4 or 6, or
  // a tRNS chunk before the pixels; WebP's VP8X alpha flag or VP8L's alpha bit; JPEG never.
  function sniff(bytes) {
    if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return { format: "JPEG", alpha: false };
    if (ascii(bytes, 1, 3) === "PNG") {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      let alpha = bytes[25] === 4 || bytes[25] === 6;
      for (let at = 8; !alpha && at + 8 <= bytes.length;) {
        const kind = ascii(bytes, at + 4, 4);
        if (kind === "IDAT" || kind === "IEND") break;
        if (kind === "tRNS") alpha = true;
        at += 12 + view.getUint32(at);
      }
      return { format: "PNG", alpha: alpha };
    }
    if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP") {
      const chunk = ascii(bytes, 12, 4);
      if (chunk === "VP8X") return { format: "WEBP", alpha: (bytes[20] & 0x10) !== 0 };
      if (chunk === "VP8L") return { format: "WEBP", alpha: (bytes[24] & 0x10) !== 0 };
      return { format: "WEBP", alpha: false };
    }
    if (ascii(bytes, 0, 4) === "GIF8") return { format: "GIF", alpha: false };
    if (ascii(bytes, 0, 2) === "BM") return { format: "BMP", alpha: false };
    return { format: "", alpha: false };
  }

  // The file's SHA-256 in hex, as the server computes it when it stores the file: the
  // preview then says when the team already had this image done (jobs/reuse.py). ""
  // where the browser cannot (no crypto.subtle outside https/localhost) or the file is
  // over the limit anyway.
  async function sha256(file) {
    if (!(window.crypto && crypto.subtle) || file.size > MAX_BYTES) return "";
    try {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
      return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    } catch (err) {
      return "";
    }
  }

  // One `size` field per file: "name|width|height|bytes|kind|sha256", kind being the
  // format (+alpha), or "unreadable" (0x0) when the browser cannot decode the file, so the
  // preview shows the submit's refusal for it too; the hash is left off when unknown.
  async function measureOne(file) {
    const bytes = new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer());
    const kind = sniff(bytes);
    let entry;
    try {
      const bitmap = await createImageBitmap(file);
      const size = [bitmap.width, bitmap.height];
      bitmap.close();
      if (!kind.format) return [file.name, 0, 0, file.size, "unreadable"];
      entry = [file.name, size[0], size[1], file.size, kind.format + (kind.alpha ? "+alpha" : "")];
    } catch (err) {
      return [file.name, 0, 0, file.size, "unreadable"];
    }
    const hash = await sha256(file);
    return hash ? entry.concat(hash) : entry;
  }

  async function measure() {
    const files = Array.from(input.files);
    const measured = await Promise.all(files.map(measureOne));
    const sizes = document.getElementById("sizes");
    sizes.innerHTML = "";
    for (const entry of measured) {
      const field = document.createElement("input");
      field.type = "hidden";
      field.name = "size";
      field.value = entry.join("|");
      sizes.appendChild(field);
    }
    document.body.dispatchEvent(new Event("sizes-ready"));
  }

  function render() {
    measure();
    thumbs.forEach((url) => URL.revokeObjectURL(url));
    thumbs = [];
    list.innerHTML = "";
    for (const file of input.files) {
      const li = document.createElement("li");
      const img = document.createElement("img");
      const url = URL.createObjectURL(file);
      thumbs.push(url);
      img.src = url;
      img.alt = "";
      img.className = "thumb";
      img.addEventListener("error", () => img.classList.add("broken"));
      const label = document.createElement("span");
      label.textContent = file.name + " · " + human(file.size);
      if (file.size > MAX_BYTES) {
        li.className = "bad";
        label.textContent += " — over the 25 MB limit";
      }
      li.append(img, label);
      list.appendChild(li);
    }
  }

  function addFiles(files) {
    const dt = new DataTransfer();
    for (const file of input.files) dt.items.add(file);
    for (const file of files) dt.items.add(file);
    input.files = dt.files;
    render();
  }

  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    addFiles(e.dataTransfer.files);
  });
  input.addEventListener("change", render);

  // A pasted image (a screenshot, "copy image" in a browser) anywhere on the page joins
  // the chosen files under a made-up name; pasted text is left alone.
  document.addEventListener("paste", (e) => {
    const images = Array.from(e.clipboardData ? e.clipboardData.files : [])
      .filter((file) => file.type.startsWith("image/"));
    if (!images.length) return;
    e.preventDefault();
    addFiles(images.map((file) => {
      pasted += 1;
      const ext = { "image/jpeg": "jpg", "image/webp": "webp" }[file.type] || "png";
      return new File([file], "pasted-" + pasted + "." + ext, { type: file.type });
    }));
  });

  // After a successful submission clear the chosen files; after a refusal keep them.
  document.body.addEventListener("htmx:afterRequest", (e) => {
    if (e.detail.elt === form && e.detail.xhr.status === 201) {
      input.value = "";
      render();
    }
  });
  // htmx only swaps 2xx answers by default; show refusals (422) too, for the form and
  // the controls inside it (presets). beforeSwap fires on the swap target, so the
  // element that asked is found through requestConfig.
  document.body.addEventListener("htmx:beforeSwap", (e) => {
    if (form.contains(e.detail.requestConfig.elt) && e.detail.xhr.status === 422) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  document.body.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.requestConfig.elt === form) {
      document.getElementById("outcome").scrollIntoView({ behavior: "smooth", block: "start" });
    }
  });
})();
