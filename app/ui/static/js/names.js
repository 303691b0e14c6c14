// Named models: the tenant's model names, and a name's page with its versions (model,
// status, holdout metrics, aliases) and its aliases (who moved each last, and why).
import { get } from "./api.js";
import { el, link, number, status, table, when } from "./dom.js";

const nameHref = (name) => `#/model-names/${encodeURIComponent(name)}`;
const namePath = (name) => `/v1/model-names/${encodeURIComponent(name)}`;

function metricsText(metrics) {
  const text = Object.entries(metrics || {}).map(([k, v]) => `${k} ${number(v)}`).join(", ");
  return text || "—";
}

function aliasesText(aliases) {
  return aliases.length ? aliases.map((a) => `${a.alias} → v${a.version}`).join(", ") : "—";
}

export async function modelNamesPage(view) {
  const page = await get("/v1/model-names?limit=100");
  if (!page.data.length) {
    view.replaceChildren(el("h1", {}, "Named models"),
      el("p", {}, "No named models yet: a job with a `model_name` adds a version."));
    return null;
  }
  // The list answers no aliases: each name's own page does, read here side by side.
  const controller = new AbortController();
  const aliasCells = new Map(page.data.map((n) => [n.name, el("span", { className: "hint" }, "…")]));
  view.replaceChildren(
    el("h1", {}, "Named models"),
    table(["name", "latest version", "aliases", "updated"],
      page.data.map((n) => [
        link(nameHref(n.name), n.name),
        `v${n.latest_version}`,
        aliasCells.get(n.name),
        when(n.updated_at),
      ]),
      { caption: "Model names, newest first" }),
    ...(page.has_more ? [el("p", { className: "hint" }, "Showing the newest 100.")] : []),
  );
  for (const n of page.data) {
    get(namePath(n.name)).then(
      (found) => {
        if (!controller.signal.aborted) aliasCells.get(n.name).replaceWith(aliasesText(found.aliases));
      },
      () => {
        if (!controller.signal.aborted) aliasCells.get(n.name).replaceWith("—");
      },
    );
  }
  return () => controller.abort();
}

function gateText(version) {
  const gate = version.gate;
  const c = version.comparison;
  const parts = [];
  if (gate) parts.push(gate.passed ? `gate passed (${gate.metric})` : `gate failed: ${gate.reason || gate.metric}`);
  if (c) parts.push(`${c.passed ? "promoted" : "not promoted"}: ${c.reason}`);
  return parts.join("; ") || "—";
}

export async function modelNamePage(view, name) {
  const found = await get(namePath(name));
  const versions = found.versions.length
    ? table(["version", "model", "status", "holdout metrics", "gate", "aliases", "created"],
        found.versions.map((v) => [
          `v${v.version}`,
          link(`#/models/${v.model_id}`, v.model_id),
          status(v.status),
          metricsText(v.metrics),
          gateText(v),
          v.aliases.length ? v.aliases.join(", ") : "—",
          when(v.created_at),
        ]),
        { caption: "Versions, oldest first" })
    : el("p", {}, "No versions.");
  const aliases = found.aliases.length
    ? table(["alias", "version", "model", "set by", "reason", "updated"],
        found.aliases.map((a) => [
          a.alias,
          `v${a.version}`,
          link(`#/models/${a.model_id}`, a.model_id),
          a.set_by.startsWith("job_") ? link(`#/jobs/${a.set_by}`, a.set_by) : a.set_by,
          a.reason || "—",
          when(a.updated_at),
        ]),
        { caption: "Aliases" })
    : el("p", { className: "hint" }, "No aliases yet.");
  view.replaceChildren(
    el("h1", {}, `Named model ${found.name}`),
    el("p", {}, `Latest version v${found.latest_version}, updated ${when(found.updated_at)}.`),
    el("h2", {}, "Versions"),
    versions,
    el("h2", {}, "Aliases"),
    aliases,
  );
}
