// Drop zone for the upload form: dropped files go into the real <input type=file>, so the
// form posts them like picked ones (with or without htmx). Sizes are checked here only to
// warn early; the server decides.
(function () {
  const MAX_BYTES = 25 * 1024 * 1024;
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("images");
  const list = document.getElementById("file-list");
  if (!form || !zone || !input) return;

  function human(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(1) + " MB";
    return n >= 1024 ? Math.round(n / 1024) + " KB" : n + " bytes";
  }

  // Measure the chosen images in the browser so the preview can show result sizes and
  // prices before anything is uploaded. The server still decodes every file on submit.
  async function measure() {
    const sizes = document.getElementById("sizes");
    sizes.innerHTML = "";
    for (const file of input.files) {
      try {
        const bitmap = await createImageBitmap(file);
        const field = document.createElement("input");
        field.type = "hidden";
        field.name = "size";
        field.value = [file.name, bitmap.width, bitmap.height, file.size].join("|");
        sizes.appendChild(field);
        bitmap.close();
      } catch (err) {
        // Not decodable here; the server will say why on submit.
      }
    }
    document.body.dispatchEvent(new Event("sizes-ready"));
  }

  function render() {
    measure();
    list.innerHTML = "";
    for (const file of input.files) {
      const li = document.createElement("li");
      li.textContent = file.name + " · " + human(file.size);
      if (file.size > MAX_BYTES) {
        li.className = "bad";
        li.textContent += " — over the 25 MB limit";
      }
      list.appendChild(li);
    }
  }

  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const dt = new DataTransfer();
    for (const file of input.files) dt.items.add(file);
    for (const file of e.dataTransfer.files) dt.items.add(file);
    input.files = dt.files;
    render();
  });
  input.addEventListener("change", render);

  // After a successful submission clear the chosen files; after a refusal keep them.
  document.body.addEventListener("htmx:afterRequest", (e) => {
    if (e.detail.elt === form && e.detail.xhr.status === 201) {
      input.value = "";
      render();
    }
  });
  // htmx only swaps 2xx answers by default; show refusals (422) too. beforeSwap fires
  // on the swap target, so the form is found through requestConfig.
  document.body.addEventListener("htmx:beforeSwap", (e) => {
    if (e.detail.requestConfig.elt === form && e.detail.xhr.status === 422) {
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
