// The router: `#/jobs`, `#/jobs/{id}`, … Each page is a function that fills the view
// and may return a cleanup (closing its event streams) run when the user leaves it.
import { ApiError, key, onSignedOut } from "./api.js";
import { el, errorBox } from "./dom.js";
import { datasetPage, datasetsPage } from "./datasets.js";
import { jobPage, jobsPage } from "./jobs.js";
import { modelPage, modelsPage } from "./models.js";
import { modelNamePage, modelNamesPage } from "./names.js";
import { sweepPage, sweepsPage } from "./sweeps.js";

const ROUTES = [
  [/^#\/jobs\/([^/]+)$/, jobPage],
  [/^#\/jobs$/, jobsPage],
  [/^#\/datasets\/([^/]+)$/, datasetPage],
  [/^#\/datasets$/, datasetsPage],
  [/^#\/models\/([^/]+)$/, modelPage],
  [/^#\/models$/, modelsPage],
  [/^#\/model-names\/([^/]+)$/, modelNamePage],
  [/^#\/model-names$/, modelNamesPage],
  [/^#\/sweeps\/([^/]+)$/, sweepPage],
  [/^#\/sweeps$/, sweepsPage],
];

const view = document.getElementById("view");
const dialog = document.getElementById("key-dialog");
let cleanup = null;

function askForKey(reason) {
  document.getElementById("key-reason").textContent = reason || "";
  document.getElementById("sign-out").hidden = true;
  if (!dialog.open) dialog.showModal();
  document.getElementById("key-input").focus();
}

async function render() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (!key.get()) {
    view.replaceChildren();
    askForKey("Paste an API key to see this tenant's jobs, datasets and models.");
    return;
  }
  document.getElementById("sign-out").hidden = false;
  const hash = location.hash || "#/jobs";
  for (const a of document.querySelectorAll("nav a")) {
    const current = hash.startsWith(a.getAttribute("href"));
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const match = ROUTES.map(([pattern, page]) => [hash.match(pattern), page]).find(([m]) => m);
  view.replaceChildren(el("p", { className: "hint" }, "Loading…"));
  if (!match) {
    view.replaceChildren(errorBox(new Error(`No page at ${hash}.`)));
    return;
  }
  const [found, page] = match;
  try {
    cleanup = (await page(view, ...found.slice(1).map(decodeURIComponent))) || null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    view.replaceChildren(errorBox(error));
  }
}

document.getElementById("key-form").addEventListener("submit", () => {
  key.set(document.getElementById("key-input").value.trim());
  document.getElementById("key-input").value = "";
  render();
});
dialog.addEventListener("cancel", (event) => event.preventDefault());
document.getElementById("sign-out").addEventListener("click", () => {
  key.clear();
  render();
});
onSignedOut((message) => {
  if (cleanup) cleanup();
  cleanup = null;
  view.replaceChildren();
  askForKey(`The key was refused: ${message || "it is not valid or was revoked"}. Paste another.`);
});
window.addEventListener("hashchange", render);
render();
