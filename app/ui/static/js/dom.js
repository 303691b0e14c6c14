// Building the page from data without innerHTML: every value is text, never markup.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function table(headers, rows, { caption } = {}) {
  return el(
    "div",
    { className: "table-wrap" },
    el(
      "table",
      {},
      caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
    ),
  );
}

export const link = (href, text) => el("a", { href }, text);

export function number(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "—";
}

export function status(value) {
  return el("span", { className: `status status-${value}` }, value);
}

// The API's error message, shown where the page would have been: never a blank page.
export function errorBox(error) {
  return el("p", { className: "error", role: "alert" }, error.message || String(error));
}

export function definitions(pairs) {
  return el("dl", {}, pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}
