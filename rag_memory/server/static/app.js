// The ragmem page: no framework, no build, no network but this server.
// Every text from the server (answers, sources, memories) goes in through textContent.
"use strict";

const TEXT = {
  en: {
    sessions: "Conversations", newChat: "New chat", memory: "What ragmem remembers", refresh: "Refresh",
    knowledge: "Knowledge base", ingest: "Ingest", ingestPlaceholder: "Folder or file on the server",
    askPlaceholder: "Ask a question, or tell ragmem something to remember…", send: "Ask",
    apiKey: "API key", keyPrompt: "This server needs an API key.", save: "Save",
    noSessions: "No conversations yet.", noMemories: "Nothing remembered yet.", forget: "Forget",
    forgetSession: "Forget this conversation", sources: "Sources", page: "page", score: "score",
    memorySource: "memory", abstained: "Nothing relevant was found, so ragmem did not guess.",
    documents: "documents", chunks: "chunks", embedder: "embedder", generator: "generator",
    queue: "queue", waiting: "waiting", running: "running", lastIngest: "last ingest",
    jobQueued: "Ingest queued…", jobRunning: "Ingesting: {done}/{planned} files, {chunks} chunks embedded",
    jobDone: "Ingested: {added} added, {updated} updated, {removed} removed, {unchanged} unchanged, {failed} failed.",
    jobFailed: "Ingest failed: {error}", noIngest: "This server does not ingest through the page (start it with --ingest-root DIR).",
    you: "You", thinking: "…", error: "Error", cited: "cited", session: "Session", comma: ", ",
  },
  zh: {
    sessions: "对话", newChat: "新对话", memory: "ragmem 记住的内容", refresh: "刷新",
    knowledge: "知识库", ingest: "导入", ingestPlaceholder: "服务器上的文件夹或文件",
    askPlaceholder: "提个问题，或者告诉 ragmem 需要记住的事…", send: "提问",
    apiKey: "API 密钥", keyPrompt: "此服务器需要 API 密钥。", save: "保存",
    noSessions: "还没有对话。", noMemories: "还没有记住任何内容。", forget: "忘记",
    forgetSession: "忘记这段对话", sources: "来源", page: "页", score: "得分",
    memorySource: "记忆", abstained: "没有找到相关内容，ragmem 不做猜测。",
    documents: "文档", chunks: "文本块", embedder: "向量模型", generator: "生成模型",
    queue: "队列", waiting: "等待", running: "运行中", lastIngest: "上次导入",
    jobQueued: "导入已排队…", jobRunning: "正在导入：{done}/{planned} 个文件，已嵌入 {chunks} 个文本块",
    jobDone: "导入完成：新增 {added}，更新 {updated}，删除 {removed}，未变 {unchanged}，失败 {failed}。",
    jobFailed: "导入失败：{error}", noIngest: "此服务器不支持通过页面导入（启动时加 --ingest-root DIR）。",
    you: "你", thinking: "…", error: "错误", cited: "已引用", session: "对话", comma: "，",
  },
};

function pickLanguage() {
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  for (const lang of langs) {
    const l = lang.toLowerCase();
    if (l.startsWith("zh")) return "zh";
    if (l.startsWith("en")) return "en";
  }
  return "en";
}

const LANG = pickLanguage();
const T = TEXT[LANG];
const $ = (id) => document.getElementById(id);

function t(key, values) {
  let s = T[key] || TEXT.en[key] || key;
  for (const [k, v] of Object.entries(values || {})) s = s.replace(`{${k}}`, String(v));
  return s;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// -- talking to the server -------------------------------------------------------------------
const state = { key: localStorage.getItem("ragmem-key") || "", session: newSessionId(), busy: false };

function newSessionId() {
  const rand = crypto.getRandomValues(new Uint8Array(6));
  return "web-" + Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
}

function headers(extra) {
  const h = Object.assign({ "Content-Type": "application/json" }, extra || {});
  if (state.key) h.Authorization = "Bearer " + state.key;
  return h;
}

class ApiError extends Error {}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  if (response.status === 401) {
    askForKey();
    throw new ApiError(await errorText(response));
  }
  if (!response.ok) throw new ApiError(await errorText(response));
  return response.json();
}

async function errorText(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || response.statusText;
  } catch (e) {
    return response.statusText || String(response.status);
  }
}

function askForKey() {
  $("key-btn").hidden = false;
  const dialog = $("key-dialog");
  if (!dialog.open) dialog.showModal();
}

// -- asking ---------------------------------------------------------------------------------
async function ask(question) {
  state.busy = true;
  $("send").disabled = true;
  const messages = $("messages");
  messages.append(el("div", { class: "msg user", text: question }));
  const bubble = el("div", { class: "msg assistant streaming" });
  const body = el("span", { class: "answer-text", text: "" });
  bubble.append(body);
  messages.append(bubble);
  messages.scrollTop = messages.scrollHeight;
  let text = "";
  try {
    const response = await fetch("/api/ask", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ question, session_id: state.session, stream: true }),
    });
    if (response.status === 401) askForKey();
    if (!response.ok) throw new ApiError(await errorText(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = parseEvent(block);
        if (!event) continue;
        if (event.name === "piece") {
          text += event.data.text;
          body.textContent = text;
          messages.scrollTop = messages.scrollHeight;
        } else if (event.name === "answer") {
          renderAnswer(bubble, event.data);
        } else if (event.name === "error") {
          throw new ApiError(event.data.error.message);
        }
      }
    }
  } catch (err) {
    bubble.classList.add("error");
    bubble.append(el("span", { class: "meta", text: t("error") + ": " + err.message }));
  } finally {
    bubble.classList.remove("streaming");
    state.busy = false;
    $("send").disabled = false;
    refreshSessions();
    refreshMemory();
    refreshStatus();
  }
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return null;
  return { name, data: JSON.parse(data.join("\n")) };
}

// The answer with each [n] as a button that opens source n.
function renderAnswer(bubble, answer) {
  bubble.textContent = "";
  const body = el("span", { class: "answer-text" });
  const byNumber = new Map(answer.sources.map((s) => [s.n, s]));
  const re = /\[(\d+)\]/g;
  let last = 0;
  let m;
  while ((m = re.exec(answer.answer)) !== null) {
    body.append(answer.answer.slice(last, m.index));
    const source = byNumber.get(Number(m[1]));
    if (source) body.append(citeButton(source, `[${m[1]}]`));
    else body.append(m[0]);
    last = re.lastIndex;
  }
  body.append(answer.answer.slice(last));
  bubble.append(body);
  if (answer.sources.length) {
    const row = el("div", { class: "sources" });
    for (const s of answer.sources) row.append(citeButton(s, `[${s.n}] ${sourceLabel(s)}`, "source-chip"));
    bubble.append(row);
  }
  const notes = answer.notes || [];
  if (notes.length) bubble.append(el("span", { class: "meta", text: notes.join(" ") }));
  bubble.dataset.session = answer.session;
}

function citeButton(source, label, extra) {
  return el("button", {
    class: "cite" + (extra ? " " + extra : ""), type: "button", text: label, "data-n": String(source.n),
    onclick: () => openPassage(source),
  });
}

function baseName(path) {
  const parts = String(path).split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

function sourceLabel(s) {
  if (s.kind === "memory") return t("memorySource");
  return baseName(s.source) + (s.page != null ? ` · ${t("page")} ${s.page}` : "");
}

function openPassage(source) {
  $("passage").hidden = false;
  $("passage-title").textContent = `[${source.n}] ${sourceLabel(source)}`;
  const where = source.kind === "memory" ? t("memorySource") : source.source;
  $("passage-where").textContent = `${where} · ${t("score")} ${Number(source.score).toFixed(3)}`
    + (source.page != null ? ` · ${t("page")} ${source.page}` : "");
  $("passage-text").textContent = source.text;
}

// -- panels ---------------------------------------------------------------------------------
async function refreshSessions() {
  const list = $("sessions");
  let data;
  try { data = await api("/api/sessions"); } catch (e) { return; }
  list.textContent = "";
  if (!data.sessions.length) list.append(el("li", { class: "empty", text: t("noSessions") }));
  for (const s of data.sessions) {
    const item = el("li", { class: s.session_id === state.session ? "active" : "", "data-session": s.session_id },
      el("span", { class: "text", text: `${s.session_id} (${s.turns})`, title: s.last_at, onclick: () => openSession(s.session_id) }),
      el("button", { class: "forget", type: "button", title: t("forgetSession"), text: "×",
        onclick: () => forgetSession(s.session_id) }));
    list.append(item);
  }
}

async function openSession(sessionId) {
  const data = await api("/api/sessions/" + encodeURIComponent(sessionId));
  state.session = sessionId;
  const messages = $("messages");
  messages.textContent = "";
  for (const turn of data.turns) {
    messages.append(el("div", { class: "msg " + (turn.role === "user" ? "user" : "assistant"), text: turn.content }));
  }
  refreshSessions();
}

async function forgetSession(sessionId) {
  await api("/api/sessions/" + encodeURIComponent(sessionId), { method: "DELETE" });
  if (sessionId === state.session) newChat();
  refreshSessions();
  refreshMemory();
}

async function refreshMemory() {
  const list = $("memory-list");
  let data;
  try { data = await api("/api/memory"); } catch (e) { return; }
  list.textContent = "";
  if (!data.memories.length) list.append(el("li", { class: "empty", text: t("noMemories") }));
  for (const m of data.memories) {
    list.append(el("li", { "data-memory": m.id },
      el("span", { class: "text", text: m.text, title: `${m.kind} · ${m.created_at}` }),
      el("button", { class: "forget", type: "button", title: t("forget"), text: "×", "aria-label": t("forget"),
        onclick: () => forgetMemory(m.id) })));
  }
}

async function forgetMemory(id) {
  try {
    await api("/api/memory/" + encodeURIComponent(id), { method: "DELETE" });
  } finally {
    refreshMemory();
  }
}

async function refreshStatus() {
  let data;
  try { data = await api("/api/status"); } catch (e) { return; }
  const kb = data.knowledge_base;
  const gen = data.generator;
  const q = data.queue;
  $("status-line").textContent = `${kb.documents} ${t("documents")} · ${kb.chunks} ${t("chunks")} · ${t("generator")} ${gen.model}`
    + ` · ${t("queue")} ${q.running} ${t("running")}${t("comma")}${q.waiting} ${t("waiting")}`;
  const dl = $("kb-status");
  dl.textContent = "";
  const rows = [[t("documents"), kb.documents], [t("chunks"), kb.chunks], [t("embedder"), kb.embedder || "-"],
    [t("generator"), `${gen.backend} · ${gen.model}`], [t("lastIngest"), kb.last_ingest || "-"],
    [t("queue"), `${q.running} ${t("running")}${t("comma")}${q.waiting} ${t("waiting")}`]];
  for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  const canIngest = data.ingest_roots.length > 0;
  $("ingest-path").disabled = $("ingest-btn").disabled = !canIngest;
  if (!canIngest) $("job").textContent = t("noIngest");
  else if (!$("ingest-path").value) $("ingest-path").value = data.ingest_roots[0];
}

async function startIngest(path) {
  $("ingest-btn").disabled = true;
  try {
    let job = await api("/api/ingest", { method: "POST", body: JSON.stringify({ paths: [path] }) });
    while (job.state === "queued" || job.state === "running") {
      showJob(job);
      await new Promise((r) => setTimeout(r, 500));
      job = await api("/api/jobs/" + encodeURIComponent(job.id));
    }
    showJob(job);
  } catch (err) {
    $("job").textContent = t("error") + ": " + err.message;
  } finally {
    $("ingest-btn").disabled = false;
    refreshStatus();
  }
}

function showJob(job) {
  const p = job.progress;
  let line;
  if (job.state === "queued") line = t("jobQueued");
  else if (job.state === "running") line = t("jobRunning", { done: p.files_done, planned: p.files_planned ?? "?", chunks: p.chunks_embedded });
  else if (job.state === "done") line = t("jobDone", { ...job.report, failed: job.report.failed.length });
  else line = t("jobFailed", { error: job.error });
  const node = $("job");
  node.textContent = line;
  node.dataset.state = job.state;
}

function newChat() {
  state.session = newSessionId();
  $("messages").textContent = "";
  $("passage").hidden = true;
  refreshSessions();
}

// -- start ----------------------------------------------------------------------------------
function translatePage() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
}

function start() {
  translatePage();
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("question").value.trim();
    if (!q || state.busy) return;
    $("question").value = "";
    ask(q);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("ingest-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const path = $("ingest-path").value.trim();
    if (path) startIngest(path);
  });
  $("new-chat").addEventListener("click", newChat);
  $("memory-refresh").addEventListener("click", refreshMemory);
  $("passage-close").addEventListener("click", () => { $("passage").hidden = true; });
  $("key-btn").addEventListener("click", askForKey);
  $("key-form").addEventListener("submit", () => {
    state.key = $("key-input").value.trim();
    localStorage.setItem("ragmem-key", state.key);
    refreshAll();
  });
  refreshAll();
  setInterval(refreshStatus, 5000);
}

function refreshAll() {
  refreshStatus();
  refreshSessions();
  refreshMemory();
}

start();
