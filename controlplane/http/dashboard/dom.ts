// The one way the dashboard builds DOM: elements from code, data only ever as text nodes or
// attribute values. Nothing here (or anywhere in the page) assigns innerHTML.

export type Child = Node | string | number | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "number" ? String(child) : child);
  }
}

/** Replaces the element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: no #${id} in the page`);
  return el as T;
}

/** A hash or version cut to `n` characters, the whole value in the tooltip. */
export function short(value: string | null | undefined, n = 12): Node {
  if (!value) return h("span", { class: "muted" }, "—");
  return h("code", { title: value }, value.length > n ? `${value.slice(0, n)}…` : value);
}

export function pill(state: string, text: string): HTMLSpanElement {
  return h("span", { class: "pill", "data-state": state }, text);
}

/** "12:03:04.567" in local time. */
export function clock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
