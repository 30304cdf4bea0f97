/* Written for the etecrm book (not part of @jupyter-widgets/html-manager): load it just before
   embed-amd.js. It adapts the widget manager to a page served offline with MathJax 3. */
(function () {
  "use strict";
  // The manager's fonts sit next to this file. Its bundles find them from the require.js URL of
  // their module ("<page folder>/@jupyter-widgets/html-manager/dist/" by default): point it here.
  var here = new URL(".", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here;
  window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here.replace(/\/$/, "") } });
  // ipywidgets typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); the book loads
  // MathJax 3, which has no Hub. Widgets are rendered on "load", after this DOMContentLoaded handler.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (mathjax && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          if (element && mathjax.typesetPromise) {
            mathjax.typesetPromise([element]).catch(function (err) { console.warn("MathJax:", err); });
          }
        }
      };
    }
  });
})();
