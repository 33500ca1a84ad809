// Runs notifications/static/notifications/sms_compose.js under node with a minimal DOM,
// a fake fetch and a controllable clock. stdin: [{text, answer}]; for each, "types" the
// text one character at a time (each keystroke an input event), lets the debounce fire,
// and records the request body and what the counter cells show. stdout: JSON.
"use strict";
const fs = require("fs");
const vm = require("vm");
const script = fs.readFileSync(process.argv[2], "utf8");
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
const answersByText = new Map(cases.map((c) => [c.text, c.answer]));

function element(value) {
  const handlers = {};
  return { value, attrs: {}, text_: "",
    get textContent() { return this.text_; }, set textContent(v) { this.text_ = String(v); },  // as the DOM does
    addEventListener(kind, fn) { (handlers[kind] = handlers[kind] || []).push(fn); },
    fire(kind) { (handlers[kind] || []).forEach((fn) => fn()); },
    getAttribute(name) { return this.attrs[name]; }, setAttribute(name, v) { this.attrs[name] = v; } };
}
const keys = ["characters", "encoding", "parts", "remaining", "recipients", "cost_per_recipient", "total_cost", "error"];
const cells = keys.map((k) => { const e = element(""); e.attrs["data-k"] = k; return e; });
const text = element(""), numbers = element("01711000001 01711000002"), sender = element("");
const csrf = element("tok");
const form = element(""); form.attrs["data-preview-url"] = "/api/v1/sms/preview/";
form.querySelector = () => csrf;
const table = { querySelectorAll: () => cells };
const byId = { compose: form, text, numbers, sender, counter: table };

let timers = [], now = 0, requests = [];
const sandbox = {
  document: { getElementById: (id) => byId[id] || null },
  setTimeout: (fn, ms) => { const t = { fn, at: now + ms, live: true }; timers.push(t); return t; },
  clearTimeout: (t) => { if (t) t.live = false; },
  fetch: (url, opts) => {
    const body = JSON.parse(opts.body);
    requests.push({ url, body, csrf: opts.headers["X-CSRFToken"] });
    const answer = answersByText.get(body.text) || { characters: 0, parts: 0, encoding: null };
    return Promise.resolve({ json: () => Promise.resolve(answer) });
  },
  JSON, console,
};
vm.createContext(sandbox);
vm.runInContext(script, sandbox);

function advance(ms) {
  now += ms;
  const due = timers.filter((t) => t.live && t.at <= now);
  timers = timers.filter((t) => t.live && t.at > now);
  due.forEach((t) => t.fn());
}
const settle = () => new Promise((r) => setImmediate(r));

(async () => {
  await settle();
  const painted = [];
  for (const c of cases) {
    const chars = Array.from(c.text);
    for (let i = 1; i <= chars.length; i++) {  // typing: 20 ms between keys, inside the debounce
      text.value = chars.slice(0, i).join("");
      text.fire("input");
      advance(20);
    }
    advance(1000);
    await settle(); await settle();
    const shown = {};
    cells.forEach((e) => { shown[e.attrs["data-k"]] = e.textContent; });
    painted.push(shown);
    const last = requests[requests.length - 1];
    if (last.body.text !== c.text || last.body.recipients !== 2 || last.csrf !== "tok") {
      throw new Error("request did not carry the text, recipients and CSRF token");
    }
  }
  process.stdout.write(JSON.stringify({ requests: requests.length, painted }));
})().catch((e) => { console.error(e); process.exit(1); });
