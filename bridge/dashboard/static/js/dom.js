// Small DOM helpers the views share.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** A new element: ``el("span", {className: "x", dataset: {id: 1}}, "text", child)``. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** A function that runs ``work`` once on the next animation frame however often it is called before. */
export function perFrame(work) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; work(); });
  };
}

/** A number as a short text: "—" for none, else rounded to ``digits`` significant digits. */
export function num(value, digits = 5) {
  return value === null || value === undefined || !Number.isFinite(value) ? "—" : String(Number(value.toPrecision(digits)));
}
