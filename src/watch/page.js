// The live view: applies each event of the run's stream to the page. Every text from the run
// is set with textContent, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const rows = new Map();
let total = 0;

function text(id, value) {
  $(id).textContent = value;
}

function log(line) {
  const item = document.createElement("li");
  item.textContent = line;
  $("log").appendChild(item);
}

function depths(steps) {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const memo = new Map();
  const depth = (id, seen) => {
    if (memo.has(id)) return memo.get(id);
    const step = byId.get(id);
    if (!step || seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...(step.depends_on || []).map((p) => depth(p, seen))) + 1;
    memo.set(id, d);
    return d;
  };
  return steps.map((s) => depth(s.id, new Set()));
}

function layout(event) {
  text("version", "v" + event.version);
  const keep = new Map();
  const plan = $("plan");
  const levels = depths(event.steps);
  plan.replaceChildren();
  event.steps.forEach((step, index) => {
    let row = rows.get(step.id);
    if (!row) {
      row = document.createElement("li");
      row.dataset.step = step.id;
      row.dataset.state = "waiting";
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = "waiting";
      const title = document.createElement("span");
      title.className = "title";
      const after = document.createElement("div");
      after.className = "after";
      row.append(state, title, after);
    }
    row.querySelector(".title").textContent = step.id + ": " + step.title;
    const deps = step.depends_on || [];
    row.querySelector(".after").textContent = deps.length ? "after " + deps.join(", ") : "";
    row.style.marginLeft = levels[index] * 1.5 + "rem";
    plan.appendChild(row);
    keep.set(step.id, row);
  });
  rows.clear();
  keep.forEach((row, id) => rows.set(id, row));
  total = event.steps.length;
}

function set(step, state, label) {
  const row = rows.get(step);
  if (!row) return;
  row.dataset.state = state;
  row.querySelector(".state").textContent = label || state;
}

async function show(step, attempt, problem) {
  $("current").hidden = false;
  text("current-step", step);
  text("current-attempt", String(attempt));
  text("current-problem", problem || "");
  const base = "attempt/" + encodeURIComponent(step) + "/" + attempt + "/";
  for (const [name, id] of [["script.py", "current-script"], ["stdout", "current-stdout"], ["stderr", "current-stderr"]]) {
    try {
      const answer = await fetch(base + name);
      text(id, answer.ok ? await answer.text() : "");
    } catch (_) {
      text(id, "");
    }
  }
}

function minutes(eta) {
  if (eta === null || eta === undefined) return "estimating time left";
  if (eta < 60) return "under a minute left";
  return "about " + Math.ceil(eta / 60) + " min left";
}

function apply(e) {
  switch (e.event) {
    case "run_started":
      text("goal", e.goal);
      text("status", "running");
      $("status").dataset.state = "running";
      break;
    case "planned":
      layout(e);
      if (e.version > 1) log("plan v" + e.version + ": " + e.steps.length + " step(s)");
      for (const note of e.notes || []) log("note: " + note);
      break;
    case "writing":
      set(e.step, e.attempt > 1 ? "repairing" : "writing", (e.attempt > 1 ? "repairing" : "writing") + " (attempt " + e.attempt + ")");
      break;
    case "running":
      set(e.step, "running", "running (attempt " + e.attempt + ")");
      break;
    case "attempted":
      text("tokens", String(e.tokens));
      if (!e.ok) log(e.step + ": attempt " + e.attempt + " failed: " + (e.problem || "unknown"));
      show(e.step, e.attempt, e.ok ? "passed" : e.problem);
      break;
    case "state_saved":
      log(e.step + ": kept " + e.variables.length + " variable(s): " + e.variables.join(", "));
      break;
    case "step_done":
      set(e.step, "done", e.reused ? "done (kept)" : "done");
      break;
    case "step_failed":
      set(e.step, "failed", "failed");
      log(e.step + " failed: " + e.problem);
      break;
    case "step_skipped":
      set(e.step, "skipped", "skipped (" + e.because + " failed)");
      break;
    case "falling_back":
      log(e.step + ": trying its fallback after: " + e.problem);
      break;
    case "replanning":
      log("replanning from " + e.step + " (" + e.left + " replan(s) left)");
      break;
    case "planning_failed":
      log("planning failed: " + e.problem);
      break;
    case "budget_spent":
      log("the " + e.budget + " budget is spent");
      break;
    case "progress": {
      const step = Math.min(e.done + 1, Math.max(e.total, 1));
      const percent = e.total ? Math.floor((e.done * 100) / e.total) : 0;
      text("progress", "step " + step + " of " + e.total + " · " + percent + "% · " + minutes(e.eta_s));
      document.title = percent + "% · planbox watch";
      break;
    }
    case "answered":
      $("answer-box").hidden = false;
      text("answer", e.answer);
      break;
    case "run_finished": {
      const state = e.achieved ? "achieved" : "not_achieved";
      text("status", (e.achieved ? "goal achieved" : "goal not achieved") + " in " + (e.millis / 1000).toFixed(1) + " s");
      $("status").dataset.state = state;
      text("tokens", String(e.tokens));
      $("answer-box").hidden = false;
      $("report").hidden = false;
      document.title = (e.achieved ? "achieved" : "not achieved") + " · planbox watch";
      break;
    }
    default:
      break;
  }
}

const stream = new EventSource("events");
stream.onopen = () => {
  if ($("status").dataset.state === "waiting") text("status", "connected");
};
stream.onmessage = (message) => {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch (_) {
    return;
  }
  apply(event);
};
