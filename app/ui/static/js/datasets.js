// Datasets: the list with an upload area (drop a file or pick one, with progress, then
// the new dataset followed until its ingest ends), and a dataset's page with its
// schema, the first rows and delete (a 409, e.g. `dataset_in_use`, says why not).
import { del, get, upload } from "./api.js";
import { definitions, el, errorBox, link, number, status, table, when } from "./dom.js";

function size(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} B`;
}

function datasetRow(d) {
  return [
    link(`#/datasets/${d.id}`, d.name),
    link(`#/datasets/${d.id}`, d.id),
    status(d.status),
    number(d.rows),
    d.columns ? String(d.columns.length) : "—",
    size(d.bytes),
    when(d.created_at),
  ];
}

function datasetsTable(datasets) {
  if (!datasets.length) return el("p", { id: "datasets-empty" }, "No datasets yet.");
  return table(["name", "dataset", "status", "rows", "columns", "size", "created"],
    datasets.map(datasetRow), { caption: "Datasets, newest first" });
}

export async function datasetsPage(view) {
  const first = await get("/v1/datasets?limit=100");
  const list = el("div", { id: "datasets-list" }, datasetsTable(first.data));
  const timers = new Set();
  let left = false;

  async function renderList() {
    try {
      list.replaceChildren(datasetsTable((await get("/v1/datasets?limit=100")).data));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }

  view.replaceChildren(
    el("h1", {}, "Datasets"),
    uploadArea({ renderList, timers, gone: () => left }),
    list,
    ...(first.has_more ? [el("p", { className: "hint" }, "Showing the newest 100.")] : []),
  );
  return () => {
    left = true;
    timers.forEach((t) => clearTimeout(t));
  };
}

function uploadArea({ renderList, timers, gone }) {
  const input = el("input", { id: "upload-file", type: "file", name: "file" });
  const progress = el("progress", { id: "upload-progress", max: 1, value: 0, "aria-label": "Upload progress", hidden: true });
  const result = el("div", { id: "upload-result", "aria-live": "polite" });
  const zone = el("div", { className: "dropzone", id: "dropzone" },
    el("p", {}, "Drop a CSV, Parquet or JSON Lines file here, or choose one:"),
    el("label", { for: "upload-file" }, "File to upload"),
    input);
  let busy = false;

  function watch(dataset) {
    const shown = el("div", { className: "card", id: "upload-dataset" });
    const draw = (d) => shown.replaceChildren(definitions([
      ["dataset", link(`#/datasets/${d.id}`, d.id)],
      ["name", link(`#/datasets/${d.id}`, d.name)],
      ["status", status(d.status)],
      ["rows", number(d.rows)],
      ["columns", d.columns ? d.columns.map((c) => `${c.name} (${c.dtype})`).join(", ") : "—"],
      ["error", d.error || "—"],
    ]));
    draw(dataset);
    result.replaceChildren(shown);
    const poll = async (d) => {
      if (gone()) return;
      draw(d);
      if (d.status !== "processing") {
        await renderList();
        return;
      }
      const timer = setTimeout(async () => {
        timers.delete(timer);
        try {
          await poll(await get(`/v1/datasets/${d.id}`));
        } catch (error) {
          result.append(errorBox(error));
        }
      }, 1000);
      timers.add(timer);
    };
    poll(dataset);
  }

  async function send(file) {
    if (!file) return;
    if (busy) {
      result.replaceChildren(el("p", { className: "hint" }, "Wait for the upload in progress to finish."));
      return;
    }
    busy = true;
    input.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    result.replaceChildren(el("p", { className: "hint" }, `Uploading ${file.name} (${size(file.size)})…`));
    try {
      const dataset = await upload(file, (fraction) => {
        progress.value = fraction;
      });
      progress.value = 1;
      watch(dataset);
      renderList();
    } catch (error) {
      result.replaceChildren(errorBox(error));
    } finally {
      busy = false;
      input.disabled = false;
      input.value = "";
    }
  }

  input.addEventListener("change", () => send(input.files[0]));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    send(event.dataTransfer?.files?.[0]);
  });
  return el("section", { className: "card", "aria-labelledby": "upload-title" },
    el("h2", { id: "upload-title" }, "Upload a dataset"),
    zone,
    progress,
    result);
}

function cell(value) {
  if (value === null || value === undefined) return el("span", { className: "hint" }, "null");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function schemaTable(columns) {
  const known = ["name", "dtype"];
  const extra = [...new Set(columns.flatMap((c) => Object.keys(c)))].filter((k) => !known.includes(k));
  return table([...known, ...extra.map((k) => (k === "missing" ? "missing values" : k))],
    // A statistic that does not apply (a text column's mean) is a dash, not "null".
    columns.map((c) => [c.name, c.dtype, ...extra.map((k) => (c[k] === null || c[k] === undefined
      ? "—" : typeof c[k] === "number" ? number(c[k], 4) : cell(c[k])))]),
    { caption: "Columns" });
}

function previewTable(columns, rows) {
  const names = columns?.length ? columns.map((c) => c.name)
    : [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return table(names, rows.map((r) => names.map((n) => cell(r[n]))),
    { caption: `The first ${rows.length} rows` });
}

export async function datasetPage(view, id) {
  const dataset = await get(`/v1/datasets/${id}`);
  const message = el("div", { id: "dataset-message", "aria-live": "polite" });
  const remove = el("button", { type: "button", className: "secondary", id: "delete-dataset" }, "Delete");
  const preview = el("div", { id: "dataset-preview" });
  let timer = null;
  let left = false;

  remove.addEventListener("click", async () => {
    remove.disabled = true;
    try {
      await del(`/v1/datasets/${id}`);
      location.hash = "#/datasets";
    } catch (error) {
      message.replaceChildren(errorBox(error));
      remove.disabled = false;
    }
  });

  view.replaceChildren(
    el("h1", {}, `Dataset ${dataset.name}`),
    definitions([
      ["dataset", id],
      ["status", status(dataset.status)],
      ["format", dataset.format],
      ["rows", number(dataset.rows)],
      ["size", size(dataset.bytes)],
      ["sha256", dataset.sha256 || "—"],
      ["imported from", dataset.source_url || "—"],
      ["error", dataset.error || "—"],
      ["created", when(dataset.created_at)],
    ]),
    el("div", { className: "actions" }, remove),
    message,
    el("h2", {}, "Schema"),
    dataset.columns?.length ? schemaTable(dataset.columns) : el("p", { className: "hint" }, "No columns yet."),
    el("h2", {}, "Preview"),
    preview,
  );

  if (dataset.status === "ready") {
    try {
      const answer = await get(`/v1/datasets/${id}/preview?limit=20`);
      preview.replaceChildren(
        answer.data.length ? previewTable(dataset.columns, answer.data) : el("p", {}, "No rows."),
        ...(answer.has_more ? [el("p", { className: "hint" }, "More rows follow.")] : []));
    } catch (error) {
      preview.replaceChildren(errorBox(error));
    }
  } else if (dataset.status === "processing") {
    preview.replaceChildren(el("p", { className: "hint" }, "Still being ingested: this page reloads when it is done."));
    timer = setTimeout(async function again() {
      try {
        const now = await get(`/v1/datasets/${id}`);
        if (left) return;
        // Ingest ended: let the router draw the page again (running this cleanup first).
        if (now.status === "processing") timer = setTimeout(again, 1000);
        else window.dispatchEvent(new HashChangeEvent("hashchange"));
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    }, 1000);
  } else {
    preview.replaceChildren(el("p", { className: "hint" }, "The dataset failed to ingest: no rows to show."));
  }
  return () => {
    left = true;
    clearTimeout(timer);
  };
}
