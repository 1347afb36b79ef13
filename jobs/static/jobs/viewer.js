// Zoom and move for the compare page and the job page's before/after slider.
//
// A viewer ([data-viewer]) has stages (.viewer-stage: frames that clip) holding images
// (img[data-viewer-img]) shown at the stage's width. Every image of a viewer shows the
// same part of its picture: the view is kept in fractions of the image (u, v: the point
// at the top-left corner; z: the zoom, 1 = the whole image fits), so results of
// different sizes line up point for point. Transforms go through the CSSOM: the
// Content-Security-Policy refuses style="" attributes, not this.
(function () {
  "use strict";

  var STEP = 1.5; // one press of + or -
  var MAX_ZOOM = 16;
  // By viewer key: the compare grid is re-rendered every 2 s while jobs run, and the
  // job page's live part after "keep this one"; the view survives those swaps.
  var views = {};

  function all(root, selector) {
    return Array.prototype.slice.call(root.querySelectorAll(selector));
  }

  function viewOf(viewer) {
    var key = viewer.getAttribute("data-viewer");
    if (!views[key]) views[key] = { z: 1, u: 0, v: 0 };
    return views[key];
  }

  // The largest result of the viewer (the original when there is none yet): what "1:1"
  // and the zoom readout are about. Its width attribute is the result's real width
  // (the page may show a thumbnail until one zooms in).
  function reference(viewer) {
    var imgs = all(viewer, "img[data-viewer-img]");
    var results = imgs.filter(function (img) {
      return img.hasAttribute("data-result");
    });
    return (results.length ? results : imgs).reduce(function (best, img) {
      var width = Number(img.getAttribute("width")) || 0;
      return !best || width > Number(best.getAttribute("width")) ? img : best;
    }, null);
  }

  // The zoom that shows one pixel of the reference image per screen pixel (device
  // pixels: on a high-density screen that is smaller than one CSS pixel).
  function actualZoom(viewer) {
    var img = reference(viewer);
    if (!img || !img.offsetWidth) return 1;
    return Number(img.getAttribute("width")) / (img.offsetWidth * (window.devicePixelRatio || 1));
  }

  function limits(viewer) {
    var actual = actualZoom(viewer);
    return { min: Math.min(1, actual), max: Math.max(MAX_ZOOM, actual * 4) };
  }

  // Keep the picture in the frame: centred when smaller than it, edge to edge when larger.
  function clampAxis(start, z) {
    var span = 1 / z;
    if (span >= 1) return (1 - span) / 2;
    return Math.min(Math.max(start, 0), 1 - span);
  }

  function apply(viewer) {
    var view = viewOf(viewer);
    var range = limits(viewer);
    view.z = Math.min(Math.max(view.z, range.min), range.max);
    view.u = clampAxis(view.u, view.z);
    view.v = clampAxis(view.v, view.z);
    // translate() percentages are of the image's own (unscaled) box: the same rule puts
    // the same point in the same place whatever each stage's width.
    var transform =
      "translate(" + -view.u * view.z * 100 + "%, " + -view.v * view.z * 100 + "%) scale(" + view.z + ")";
    all(viewer, "img[data-viewer-img]").forEach(function (img) {
      img.style.transformOrigin = "0 0";
      img.style.transform = transform;
      // Past "fit", the full image replaces the thumbnail (the same picture, sharper).
      var full = img.getAttribute("data-full");
      if (view.z > 1.001 && full) {
        img.removeAttribute("data-full");
        img.src = full;
      }
    });
    viewer.classList.toggle("zoomed", view.z > 1.001);
    var ref = reference(viewer);
    var level = viewer.querySelector(".viewer-level");
    if (level && ref && ref.offsetWidth) {
      var percent = Math.round((view.z / actualZoom(viewer)) * 100);
      level.textContent = (Math.abs(view.z - 1) < 0.001 ? "fit · " : "") + percent + "%";
    }
  }

  // Zoom to `z`, keeping the image point under (fx, fy) (fractions of a stage) in place.
  function zoomAt(viewer, z, fx, fy) {
    var view = viewOf(viewer);
    var range = limits(viewer);
    z = Math.min(Math.max(z, range.min), range.max);
    var px = view.u + fx / view.z;
    var py = view.v + fy / view.z;
    view.z = z;
    view.u = px - fx / z;
    view.v = py - fy / z;
    apply(viewer);
  }

  function panBy(viewer, stage, dx, dy) {
    var view = viewOf(viewer);
    var img = stage.querySelector("img[data-viewer-img]");
    if (!img || !img.offsetWidth || !img.offsetHeight) return;
    view.u -= dx / (img.offsetWidth * view.z);
    view.v -= dy / (img.offsetHeight * view.z);
    apply(viewer);
  }

  function act(viewer, what) {
    if (what === "in") zoomAt(viewer, viewOf(viewer).z * STEP, 0.5, 0.5);
    else if (what === "out") zoomAt(viewer, viewOf(viewer).z / STEP, 0.5, 0.5);
    else if (what === "fit") zoomAt(viewer, 1, 0.5, 0.5);
    else if (what === "actual") zoomAt(viewer, actualZoom(viewer), 0.5, 0.5);
  }

  function fractionIn(stage, clientX, clientY) {
    var box = stage.getBoundingClientRect();
    return { x: (clientX - box.left) / box.width, y: (clientY - box.top) / box.height };
  }

  function bindStage(viewer, stage) {
    if (stage.hasAttribute("data-viewer-bound")) return;
    stage.setAttribute("data-viewer-bound", "");
    var pointers = new Map(); // pointerId -> last {x, y}: one drags, two pinch

    stage.addEventListener("pointerdown", function (event) {
      // On the slider, a press outside its images is on its handle (in its shadow DOM,
      // so the event names the slider itself): that one moves the divider, not the view.
      if (event.target === stage && stage.tagName === "IMG-COMPARISON-SLIDER") return;
      if (event.pointerType === "mouse" && event.button !== 0) return;
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      stage.setPointerCapture(event.pointerId);
      if (viewer.classList.contains("zoomed") || pointers.size > 1) event.preventDefault();
    });
    stage.addEventListener("pointermove", function (event) {
      var last = pointers.get(event.pointerId);
      if (!last) return;
      var now = { x: event.clientX, y: event.clientY };
      if (pointers.size === 1) {
        panBy(viewer, stage, now.x - last.x, now.y - last.y);
      } else if (pointers.size === 2) {
        var other = Array.from(pointers.entries()).filter(function (e) {
          return e[0] !== event.pointerId;
        })[0][1];
        var before = Math.hypot(last.x - other.x, last.y - other.y);
        var after = Math.hypot(now.x - other.x, now.y - other.y);
        if (before > 0) {
          var mid = fractionIn(stage, (now.x + other.x) / 2, (now.y + other.y) / 2);
          zoomAt(viewer, viewOf(viewer).z * (after / before), mid.x, mid.y);
        }
      }
      pointers.set(event.pointerId, now);
    });
    function release(event) {
      pointers.delete(event.pointerId);
    }
    stage.addEventListener("pointerup", release);
    stage.addEventListener("pointercancel", release);

    // Ctrl (or Cmd) + wheel zooms at the pointer; a trackpad pinch arrives as that too.
    // A plain wheel still scrolls the page.
    stage.addEventListener(
      "wheel",
      function (event) {
        if (!event.ctrlKey && !event.metaKey) return;
        event.preventDefault();
        var at = fractionIn(stage, event.clientX, event.clientY);
        zoomAt(viewer, viewOf(viewer).z * Math.exp(-event.deltaY * 0.002), at.x, at.y);
      },
      { passive: false }
    );

    // Arrow keys move a zoomed view, + and - zoom. The slider keeps its own arrow keys.
    if (stage.tagName !== "IMG-COMPARISON-SLIDER") {
      stage.addEventListener("keydown", function (event) {
        var keys = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
        if (event.key === "+" || event.key === "=") act(viewer, "in");
        else if (event.key === "-") act(viewer, "out");
        else if (keys[event.key] && viewer.classList.contains("zoomed")) {
          var step = stage.clientWidth / 10;
          panBy(viewer, stage, keys[event.key][0] * step, keys[event.key][1] * step);
        } else return;
        event.preventDefault();
      });
    }
  }

  function init(root) {
    var viewers = all(root, "[data-viewer]");
    if (root.matches && root.matches("[data-viewer]")) viewers.push(root);
    viewers.forEach(function (viewer) {
      all(viewer, ".viewer-tools").forEach(function (tools) {
        tools.hidden = false;
      });
      all(viewer, ".viewer-stage").forEach(function (stage) {
        bindStage(viewer, stage);
      });
      // Sizes are known once images are laid out: the readout and "1:1" need them.
      all(viewer, "img[data-viewer-img]").forEach(function (img) {
        img.addEventListener("load", function () {
          apply(viewer);
        });
      });
      apply(viewer);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-zoom]");
    var viewer = button && button.closest("[data-viewer]");
    if (viewer) act(viewer, button.getAttribute("data-zoom"));
  });
  document.addEventListener("DOMContentLoaded", function () {
    init(document);
  });
  document.addEventListener("htmx:load", function (event) {
    init(event.target);
  });
  window.addEventListener("resize", function () {
    all(document, "[data-viewer]").forEach(apply);
  });
})();
