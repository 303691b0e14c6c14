// Sweeps: the list, and a sweep's page with its best trial, a chart of score against
// trial number (with the best so far), the trials and the events, live over the
// sweep's event stream, and cancel while it runs.
import { follow, get, postRetryingConflicts } from "./api.js";
import { definitions, el, errorBox, link, number, status, table, when } from "./dom.js";

const STATES = ["running", "done", "pruned", "failed", "cancelled"];

function countsText(counts) {
  const text = STATES.filter((s) => counts?.[s]).map((s) => `${counts[s]} ${s}`).join(", ");
  return text || "none yet";
}

function scoreText(score, std) {
  if (score === null || score === undefined) return "—";
  return std === null || std === undefined ? number(score) : `${number(score)} ± ${number(std)}`;
}

const paramsText = (params) => el("code", { className: "params" }, JSON.stringify(params ?? {}));

export async function sweepsPage(view) {
  const page = await get("/v1/sweeps?limit=50");
  view.replaceChildren(
    el("h1", {}, "Sweeps"),
    page.data.length
      ? table(["sweep", "status", "metric", "trials", "best score", "created"],
          page.data.map((s) => [
            link(`#/sweeps/${s.id}`, s.id),
            status(s.status),
            `${s.metric} (${s.direction})`,
            countsText(s.counts),
            s.best_trial ? scoreText(s.best_trial.score, s.best_trial.score_std) : "—",
            when(s.created_at),
          ]),
          { caption: "Sweeps, newest first" })
      : el("p", {}, "No sweeps yet: POST a sweep spec to /v1/sweeps."),
    ...(page.has_more ? [el("p", { className: "hint" }, "Showing the newest 50.")] : []),
  );
}

function scoreChart(container, metric) {
  const width = () => Math.max(280, container.clientWidth || 600);
  const stepped = uPlot.paths?.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
  const plot = new uPlot(
    {
      width: width(),
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: "trial", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { label: metric }],
      series: [
        { label: "trial" },
        { label: "score", stroke: "#2457c5", paths: () => null, points: { show: true, size: 8 } },
        { label: "best so far", stroke: "#1b7a3a", width: 2, paths: stepped, points: { show: false } },
      ],
    },
    [[], [], []],
    container,
  );
  const resize = () => plot.setSize({ width: width(), height: 260 });
  window.addEventListener("resize", resize);
  return {
    draw(sweep) {
      const done = sweep.trials.filter((t) => t.state === "done" && typeof t.score === "number")
        .sort((a, b) => a.number - b.number);
      const better = sweep.direction === "minimize" ? Math.min : Math.max;
      let best = null;
      const bests = done.map((t) => (best = best === null ? t.score : better(best, t.score)));
      container.dataset.points = String(done.length);
      plot.setData([done.map((t) => t.number), done.map((t) => t.score), bests]);
    },
    close: () => window.removeEventListener("resize", resize),
  };
}

function bestCard(sweep) {
  const b = sweep.best_trial;
  if (!b) return el("p", { className: "hint" }, "No trial has finished yet.");
  return definitions([
    ["trial", `#${b.number}`],
    ["score", scoreText(b.score, b.score_std)],
    ["params", paramsText(b.params)],
    ["job", link(`#/jobs/${b.job_id}`, b.job_id)],
    ["model", b.model_id ? link(`#/models/${b.model_id}`, b.model_id) : "not delivered yet"],
  ]);
}

function trialsTable(sweep) {
  if (!sweep.trials.length) return el("p", { className: "hint" }, "No trials yet.");
  return table(["trial", "state", "score", "params", "seconds", "job"],
    sweep.trials.map((t) => [
      String(t.number),
      t.error ? el("span", { title: t.error }, status(t.state), " ", t.error) : status(t.state),
      scoreText(t.score, t.score_std),
      paramsText(t.params),
      number(t.seconds, 1),
      link(`#/jobs/${t.job_id}`, t.job_id),
    ]),
    { caption: "Trials, by number" });
}

function summary(sweep) {
  const spec = sweep.spec || {};
  return definitions([
    ["status", status(sweep.status)],
    ["metric", `${sweep.metric} (${sweep.direction})`],
    ["task", sweep.task],
    ["trials", `${countsText(sweep.counts)} of at most ${spec.max_trials ?? "—"}`],
    ["search", `${spec.sampler ?? "—"} sampler, ${spec.pruner ?? "—"} pruner${spec.cv_folds ? `, ${spec.cv_folds}-fold CV` : ""}`],
    ["final job", sweep.final_job_id ? link(`#/jobs/${sweep.final_job_id}`, sweep.final_job_id) : "—"],
    ["result model", sweep.model_id ? link(`#/models/${sweep.model_id}`, sweep.model_id) : "—"],
    ["error", sweep.error ? `${sweep.error.code}: ${sweep.error.message}` : "—"],
    ["created", when(sweep.created_at)],
    ["finished", when(sweep.finished_at)],
  ]);
}

export async function sweepPage(view, id) {
  let sweep = await get(`/v1/sweeps/${id}`);
  const controller = new AbortController();
  const summaryBox = el("div", { id: "sweep-summary" });
  const bestBox = el("div", { className: "card", id: "best-trial" });
  const chartBox = el("div", { className: "chart", id: "sweep-chart", role: "img",
    "aria-label": `${sweep.metric} of each done trial, and the best so far, against trial number` });
  const trialsBox = el("div", { id: "trials" });
  const eventsList = el("ol", { className: "events", id: "sweep-events", "aria-live": "polite" });
  const message = el("div", { id: "sweep-message", "aria-live": "polite" });
  const cancel = el("button", { type: "button", className: "secondary", id: "cancel-sweep" }, "Cancel");

  view.replaceChildren(
    el("h1", {}, `Sweep ${sweep.id}`),
    summaryBox,
    el("div", { className: "actions" }, cancel),
    message,
    el("h2", {}, "Best trial"),
    bestBox,
    el("h2", {}, "Score per trial"),
    chartBox,
    el("h2", {}, "Trials"),
    trialsBox,
    el("h2", {}, "Events"),
    eventsList,
  );
  const chart = scoreChart(chartBox, sweep.metric);

  function draw() {
    summaryBox.replaceChildren(summary(sweep));
    bestBox.replaceChildren(bestCard(sweep));
    chart.draw(sweep);
    trialsBox.replaceChildren(trialsTable(sweep));
    cancel.disabled = sweep.status !== "running";
  }

  // One fetch at a time; events arriving meanwhile ask for one more after it.
  let fetching = null;
  let again = false;
  async function refresh() {
    if (fetching) {
      again = true;
      return fetching;
    }
    fetching = (async () => {
      do {
        again = false;
        sweep = await get(`/v1/sweeps/${id}`);
        if (!controller.signal.aborted) draw();
      } while (again && !controller.signal.aborted);
    })();
    try {
      await fetching;
    } finally {
      fetching = null;
    }
    return undefined;
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    message.replaceChildren();
    try {
      sweep = await postRetryingConflicts(`/v1/sweeps/${id}/cancel`);
      draw();
    } catch (error) {
      message.replaceChildren(errorBox(error));
      draw();
    }
  });

  draw();
  follow(`/v1/sweeps/${id}/events`, (event) => {
    eventsList.append(el("li", { className: `event-${event.level}` },
      `${when(event.created_at)} ${event.type}: ${event.message}`));
    refresh().catch((error) => message.replaceChildren(errorBox(error)));
  }, controller).catch((error) => message.replaceChildren(errorBox(error)));
  return () => {
    controller.abort();
    chart.close();
  };
}
