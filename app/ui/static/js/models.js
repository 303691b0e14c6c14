// Models: the list, and a model's page with its holdout metrics, the gate decision
// (and the champion gate's head-to-head), feature importance, the input schema,
// deploy / undeploy, artifact downloads and a "Try it" form that predicts one record.
import { download, get, post } from "./api.js";
import { definitions, el, errorBox, link, number, status, table, when } from "./dom.js";

const NUMERIC = new Set(["int", "float", "bool", "integer", "number", "double"]);

function holdoutMetric(model) {
  const metrics = model.metrics || {};
  const names = [model.gate?.metric, "accuracy", "r2", "rmse", ...Object.keys(metrics)];
  const name = names.find((n) => n && typeof metrics[n] === "number");
  return name ? `${name} ${number(metrics[name])}` : "—";
}

function nameLink(model) {
  if (!model.model_name) return "—";
  const text = model.version ? `${model.model_name}@${model.version}` : model.model_name;
  return link(`#/model-names/${encodeURIComponent(model.model_name)}`, text);
}

export async function modelsPage(view) {
  const page = await get("/v1/models?limit=100");
  view.replaceChildren(
    el("h1", {}, "Models"),
    page.data.length
      ? table(["model", "status", "type", "task", "target", "name", "holdout metric", "created"],
          page.data.map((m) => [
            link(`#/models/${m.id}`, m.id),
            status(m.status),
            m.type,
            m.task,
            m.target,
            nameLink(m),
            holdoutMetric(m),
            when(m.created_at),
          ]),
          { caption: "Models, newest first" })
      : el("p", {}, "No models yet: a succeeded job registers one."),
    ...(page.has_more ? [el("p", { className: "hint" }, "Showing the newest 100.")] : []),
  );
}

function summary(model) {
  return definitions([
    ["status", status(model.status)],
    ["type", model.type],
    ["task", model.task],
    ["target", model.target],
    ["classes", model.classes ? model.classes.map(String).join(", ") : "—"],
    ["name", nameLink(model)],
    ["job", link(`#/jobs/${model.job_id}`, model.job_id)],
    ["dataset", link(`#/datasets/${model.dataset_id}`, model.dataset_id)],
    ["created", when(model.created_at)],
  ]);
}

function metricsTable(metrics) {
  const rows = Object.entries(metrics || {});
  if (!rows.length) return el("p", { className: "hint" }, "No holdout metrics.");
  return table(["metric", "value"], rows.map(([k, v]) => [k, number(v)]), { caption: "Holdout metrics" });
}

function gateBlock(model) {
  const parts = [];
  const gate = model.gate;
  if (gate) {
    const rows = [
      ["metric", gate.metric],
      ["value", number(gate.value)],
      ["min", number(gate.min)],
      ["max", number(gate.max)],
    ];
    if (gate.beats) rows.push(["beats", `${gate.beats} by ${number(gate.by)}`]);
    rows.push(["passed", gate.passed ? "yes" : "no"]);
    rows.push(["reason", gate.reason || "—"]);
    if (gate.overridden_at) rows.push(["deployed by hand", when(gate.overridden_at)]);
    parts.push(el("div", { className: "card", id: "model-gate" }, el("h3", {}, "Gate"), definitions(rows)));
  } else {
    parts.push(el("p", { className: "hint", id: "model-gate" }, "No gate: deployed as trained."));
  }
  const c = model.comparison;
  if (c) {
    parts.push(el("div", { className: "card", id: "model-comparison" }, el("h3", {}, "Champion gate"), definitions([
      ["metric", c.metric],
      ["candidate", number(c.candidate)],
      ["champion", number(c.champion)],
      ["champion version", c.champion_version ?? "—"],
      ["champion model", c.champion_model_id ? link(`#/models/${c.champion_model_id}`, c.champion_model_id) : "—"],
      ["margin", number(c.by)],
      ["holdout rows", number(c.rows)],
      ["promoted", c.passed ? "yes" : "no"],
      ["reason", c.reason],
    ])));
  }
  return el("div", { className: "grid" }, parts);
}

function coefficientsTable(coefficients) {
  return table(["feature", "category", "class", "weight"],
    coefficients.map((c) => [c.feature, c.category ?? "—", c.class === null || c.class === undefined
      ? "—" : String(c.class), number(c.weight)]),
    { caption: "Coefficients on the standardized features, largest first" });
}

function importanceTable(importance) {
  return table(["feature", "gain", "split"],
    importance.map((f) => [f.feature, number(f.gain), String(f.split)]),
    { caption: "Feature importance (total split gain), highest first" });
}

function tryForm(model, sample) {
  const output = el("div", { id: "prediction", "aria-live": "polite" });
  const inputs = model.features.map((f) => {
    const numeric = NUMERIC.has(f.dtype);
    const value = sample?.[f.name];
    return [f, el("input", {
      id: `try-${f.name}`,
      name: f.name,
      type: numeric ? "number" : "text",
      step: numeric ? "any" : undefined,
      value: value === null || value === undefined ? undefined : numeric ? Number(value) : String(value),
    })];
  });
  const button = el("button", { type: "submit", id: "predict-button" }, "Predict");
  const form = el("form", { className: "inline card", id: "try-form", "aria-label": "Try the model" },
    inputs.map(([f, input]) => el("div", {},
      el("label", { for: input.id }, `${f.name} (${f.dtype})`), input)),
    el("div", {}, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const record = {};
    for (const [f, input] of inputs) {
      const text = input.value.trim();
      record[f.name] = text === "" ? null : input.type === "number" ? Number(text) : input.value;
    }
    button.disabled = true;
    output.replaceChildren(el("p", { className: "hint" }, "Predicting…"));
    try {
      const answer = await post(`/v1/models/${model.id}/predict`, { inputs: [record] });
      const prediction = answer.predictions[0];
      const probabilities = answer.probabilities?.[0];
      output.replaceChildren(
        definitions([["prediction", typeof prediction === "number" ? number(prediction) : String(prediction)]]),
        ...(probabilities
          ? [table(["class", "probability"],
              Object.entries(probabilities).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, number(v)]),
              { caption: "Probabilities" })]
          : []));
    } catch (error) {
      output.replaceChildren(errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
  return el("div", {},
    el("p", { className: "hint" }, "One record, prefilled from the dataset's first row where it could be read. "
      + "Leave a field empty for a missing value."),
    form,
    output);
}

export async function modelPage(view, id) {
  let model = await get(`/v1/models/${id}`);
  let sample = null;
  try {
    sample = (await get(`/v1/datasets/${model.dataset_id}/preview?limit=1`)).data[0] || null;
  } catch (error) {
    sample = null; // the dataset may be gone: the form starts empty
  }
  const summaryBox = el("div");
  const gateBox = el("div");
  const message = el("div", { id: "model-message", "aria-live": "polite" });
  const deploy = el("button", { type: "button", id: "deploy-model" }, "Deploy");
  const undeploy = el("button", { type: "button", className: "secondary", id: "undeploy-model" }, "Undeploy");
  const safetensors = el("button", { type: "button", className: "secondary", id: "download-artifact" },
    "Download artifact (safetensors)");
  const onnx = el("button", { type: "button", className: "secondary", id: "download-onnx" }, "Download ONNX");

  function draw() {
    summaryBox.replaceChildren(summary(model));
    gateBox.replaceChildren(gateBlock(model));
    deploy.disabled = model.status === "deployed";
    undeploy.disabled = model.status !== "deployed";
  }

  async function act(button, work) {
    button.disabled = true;
    message.replaceChildren();
    try {
      await work();
    } catch (error) {
      message.replaceChildren(errorBox(error));
    } finally {
      draw();
      if (button === safetensors || button === onnx) button.disabled = false;
    }
  }

  deploy.addEventListener("click", () => act(deploy, async () => {
    model = await post(`/v1/models/${id}/deploy`);
  }));
  undeploy.addEventListener("click", () => act(undeploy, async () => {
    model = await post(`/v1/models/${id}/undeploy`);
  }));
  safetensors.addEventListener("click", () => act(safetensors,
    () => download(`/v1/models/${id}/artifact`, `${id}.safetensors`)));
  onnx.addEventListener("click", () => act(onnx,
    () => download(`/v1/models/${id}/artifact?format=onnx`, `${id}.onnx`)));

  view.replaceChildren(
    el("h1", {}, `Model ${model.id}`),
    summaryBox,
    el("div", { className: "actions" }, deploy, undeploy, safetensors, onnx),
    message,
    el("h2", {}, "Holdout metrics"),
    metricsTable(model.metrics),
    el("h2", {}, "Gate decision"),
    gateBox,
    ...(model.feature_importance
      ? [el("h2", {}, "Feature importance"), importanceTable(model.feature_importance)] : []),
    ...(model.coefficients
      ? [el("h2", {}, "Coefficients"), coefficientsTable(model.coefficients)] : []),
    el("h2", {}, "Input schema"),
    table(["feature", "dtype"], model.features.map((f) => [f.name, f.dtype]), { caption: "Input features" }),
    el("h2", {}, "Try it"),
    tryForm(model, sample),
  );
  draw();
}
