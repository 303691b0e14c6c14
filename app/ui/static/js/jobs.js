// Jobs: the list, live over each unfinished job's event stream, and a job's page with
// its loss curves redrawn as each round completes, the rounds, per-shard timings, the
// events, the gate decision, cancel and rerun.
import { follow, get, post, postRetryingConflicts } from "./api.js";
import { definitions, el, errorBox, link, number, status, table, when } from "./dom.js";

const ACTIVE = new Set(["queued", "preparing", "running"]);

function bestMetric(job) {
  const metrics = job.metrics || {};
  for (const name of ["accuracy", "r2", "rmse", "val_loss"]) {
    if (typeof metrics[name] === "number") return `${name} ${number(metrics[name])}`;
  }
  return "—";
}

function jobRow(job) {
  return [
    link(`#/jobs/${job.id}`, job.id),
    status(job.status),
    `${job.progress.round} / ${job.progress.rounds}`,
    job.spec.target,
    job.spec.model.type,
    bestMetric(job),
    when(job.created_at),
  ];
}

export async function jobsPage(view) {
  const page = await get("/v1/jobs?limit=50");
  const datasets = await get("/v1/datasets?limit=100");
  const streams = [];
  const body = el("tbody");
  const rows = new Map();
  const headers = ["job", "status", "round", "target", "model", "metric", "created"];

  function place(job) {
    const row = el("tr", { id: `job-row-${job.id}` }, jobRow(job).map((c) => el("td", {}, c)));
    const old = rows.get(job.id);
    if (old) old.replaceWith(row);
    else body.append(row);
    rows.set(job.id, row);
  }

  for (const job of page.data) {
    place(job);
    if (ACTIVE.has(job.status)) {
      const controller = new AbortController();
      streams.push(controller);
      follow(`/v1/jobs/${job.id}/events`, async () => place(await get(`/v1/jobs/${job.id}`)),
        controller).catch(() => {});
    }
  }
  view.replaceChildren(
    el("h1", {}, "Jobs"),
    newJobForm(datasets.data.filter((d) => d.status === "ready")),
    page.data.length
      ? el("div", { className: "table-wrap" }, el("table", { "aria-label": "Jobs" },
          el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))), body))
      : el("p", {}, "No jobs yet."),
  );
  return () => streams.forEach((c) => c.abort());
}

function newJobForm(datasets) {
  const result = el("div", { "aria-live": "polite" });
  const dataset = el("select", { id: "new-job-dataset", name: "dataset_id", required: true },
    datasets.map((d) => el("option", { value: d.id }, `${d.name} (${d.id})`)));
  const target = el("input", { id: "new-job-target", name: "target", required: true });
  const model = el("select", { id: "new-job-model", name: "model" },
    ["logistic_regression", "mlp", "linear_regression", "gradient_boosted_trees"].map((t) =>
      el("option", { value: t }, t)));
  const rounds = el("input", { id: "new-job-rounds", type: "number", min: 1, max: 1000, value: 10 });
  const shards = el("input", { id: "new-job-shards", type: "number", min: 1, max: 256, value: 2 });
  const columns = async () => {
    const chosen = datasets.find((d) => d.id === dataset.value);
    if (chosen && !target.value) target.value = chosen.columns?.at(-1)?.name || "";
  };
  dataset.addEventListener("change", columns);
  columns();
  const form = el("form", { className: "inline card", "aria-label": "New job" },
    el("div", {}, el("label", { for: "new-job-dataset" }, "Dataset"), dataset),
    el("div", {}, el("label", { for: "new-job-target" }, "Target column"), target),
    el("div", {}, el("label", { for: "new-job-model" }, "Model"), model),
    el("div", {}, el("label", { for: "new-job-rounds" }, "Rounds (trees)"), rounds),
    el("div", {}, el("label", { for: "new-job-shards" }, "Shards"), shards),
    el("div", {}, el("button", { type: "submit", disabled: !datasets.length }, "Start job")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const trees = model.value === "gradient_boosted_trees";
    const spec = {
      dataset_id: dataset.value,
      target: target.value,
      model: trees ? { type: model.value, n_trees: Number(rounds.value) } : { type: model.value },
      distribution: { shards: Number(shards.value) },
      ...(trees ? {} : { training: { rounds: Number(rounds.value) } }),
    };
    try {
      const job = await post("/v1/jobs", spec);
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      result.replaceChildren(errorBox(error));
    }
  });
  return form;
}

function lossChart(container) {
  const width = () => Math.max(280, container.clientWidth || 600);
  const plot = new uPlot(
    {
      width: width(),
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: "round" }, { label: "loss" }],
      series: [
        { label: "round" },
        { label: "train loss", stroke: "#2457c5", width: 2, points: { show: true } },
        { label: "validation loss", stroke: "#b3261e", width: 2, dash: [6, 4], points: { show: true } },
      ],
    },
    [[], [], []],
    container,
  );
  const resize = () => plot.setSize({ width: width(), height: 260 });
  window.addEventListener("resize", resize);
  return {
    draw(rounds) {
      container.dataset.points = String(rounds.length);
      plot.setData([
        rounds.map((r) => r.round),
        rounds.map((r) => r.train_loss),
        rounds.map((r) => r.val_loss),
      ]);
    },
    close: () => window.removeEventListener("resize", resize),
  };
}

function roundsTable(rounds) {
  return table(
    ["round", "train loss", "validation loss", "validation metrics", "seconds", "slowest shard"],
    rounds.map((r) => {
      const slowest = r.shards.reduce((a, b) => (b.seconds > (a?.seconds ?? -1) ? b : a), null);
      return [
        String(r.round),
        number(r.train_loss),
        number(r.val_loss),
        Object.entries(r.val_metrics).map(([k, v]) => `${k} ${number(v)}`).join(", "),
        number(r.seconds, 2),
        slowest ? el("span", { className: "slowest" }, `#${slowest.shard} ${number(slowest.seconds, 3)} s`) : "—",
      ];
    }),
    { caption: "Rounds" },
  );
}

function shardsTable(rounds) {
  const shards = [...new Set(rounds.flatMap((r) => r.shards.map((s) => s.shard)))].sort((a, b) => a - b);
  return table(
    ["round", ...shards.map((s) => `shard ${s} (s)`)],
    rounds.map((r) => {
      const slowest = Math.max(...r.shards.map((s) => s.seconds));
      return [
        String(r.round),
        ...shards.map((s) => {
          const found = r.shards.find((x) => x.shard === s);
          if (!found) return "excluded";
          const text = number(found.seconds, 3);
          return found.seconds === slowest ? el("span", { className: "slowest", title: "slowest" }, text) : text;
        }),
      ];
    }),
    { caption: "Per-shard seconds (the slowest of each round marked)" },
  );
}

function gateCard(model) {
  if (!model) return el("p", { className: "hint" }, "No model yet.");
  const gate = model.gate;
  const rows = [
    ["model", link(`#/models/${model.id}`, model.id)],
    ["status", status(model.status)],
    ["holdout metrics", Object.entries(model.metrics).map(([k, v]) => `${k} ${number(v)}`).join(", ") || "—"],
  ];
  if (gate) {
    rows.push(["gate", `${gate.metric} ${number(gate.value)} (min ${number(gate.min)}, max ${number(gate.max)})`]);
    rows.push(["decision", gate.passed ? "passed: deployed" : `rejected: ${gate.reason}`]);
  } else {
    rows.push(["gate", "none: deployed as trained"]);
  }
  if (model.comparison) {
    const c = model.comparison;
    rows.push(["champion gate", `${c.metric}: ${number(c.candidate)} against champion ${number(c.champion)} (v${c.champion_version ?? "—"}); ${c.passed ? "promoted" : c.reason}`]);
  }
  return definitions(rows);
}

export async function jobPage(view, jobId) {
  let job = await get(`/v1/jobs/${jobId}`);
  const controller = new AbortController();
  const summary = el("div");
  const chartBox = el("div", { className: "chart", id: "loss-chart", role: "img", "aria-label": "Train and validation loss per round" });
  const roundsBox = el("div");
  const shardsBox = el("div");
  const gateBox = el("div");
  const eventsList = el("ol", { className: "events", id: "events", "aria-live": "polite" });
  const message = el("div", { "aria-live": "polite" });
  const cancel = el("button", { type: "button", className: "secondary", id: "cancel-job" }, "Cancel");
  const rerun = el("button", { type: "button", className: "secondary", id: "rerun-job" }, "Rerun");

  view.replaceChildren(
    el("h1", {}, `Job ${job.id}`),
    summary,
    el("div", { className: "actions" }, cancel, rerun),
    message,
    el("h2", {}, "Loss"),
    chartBox,
    roundsBox,
    shardsBox,
    el("h2", {}, "Model and gate"),
    gateBox,
    el("h2", {}, "Events"),
    eventsList,
  );
  const chart = lossChart(chartBox);

  async function refresh() {
    job = await get(`/v1/jobs/${jobId}`);
    const rounds = (await get(`/v1/jobs/${jobId}/metrics`)).data;
    summary.replaceChildren(definitions([
      ["status", status(job.status)],
      ["round", `${job.progress.round} / ${job.progress.rounds}`],
      ["dataset", link(`#/datasets/${job.spec.dataset_id}`, job.spec.dataset_id)],
      ["target", job.spec.target],
      ["model", job.spec.model.type],
      ["metrics", bestMetric(job)],
      ["error", job.error ? `${job.error.code}: ${job.error.message}` : "—"],
    ]));
    cancel.disabled = !ACTIVE.has(job.status);
    chart.draw(rounds);
    roundsBox.replaceChildren(roundsTable(rounds));
    shardsBox.replaceChildren(shardsTable(rounds));
    gateBox.replaceChildren(gateCard(job.model_id ? await get(`/v1/models/${job.model_id}`) : null));
  }

  cancel.addEventListener("click", async () => {
    try {
      await postRetryingConflicts(`/v1/jobs/${jobId}/cancel`);
      await refresh();
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  });
  rerun.addEventListener("click", async () => {
    try {
      const again = await post(`/v1/jobs/${jobId}/rerun`);
      location.hash = `#/jobs/${again.id}`;
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  });

  await refresh();
  follow(`/v1/jobs/${jobId}/events`, (event) => {
    eventsList.append(el("li", { className: `event-${event.level}` },
      `${when(event.created_at)} ${event.type}: ${event.message}`));
    if (["round.completed", "job.status", "job.early_stopped"].includes(event.type)) {
      refresh().catch((error) => message.replaceChildren(errorBox(error)));
    }
  }, controller).catch((error) => message.replaceChildren(errorBox(error)));
  return () => {
    controller.abort();
    chart.close();
  };
}
