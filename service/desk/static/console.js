"use strict";
// 12366 坐席工作台: login, the live case lists (WebSocket /desk/ws), the open conversation with its context package,
// agent assist (knowledge-base search), and the supervisor's view. Plain DOM, no build step; everything the server
// or a user wrote goes into the page through textContent, never as HTML.

const $ = (id) => document.getElementById(id);

const LABELS = {
  reason: { user_request: "用户要求", low_confidence: "机器人没听懂", complaint_escalation: "投诉升级",
    verification_failed: "身份核验失败", knowledge_gap: "知识库未覆盖", other: "其他" },
  status: { queued: "排队中", assigned: "服务中", after_hours: "非工作时间留言", closed: "已结束", abandoned: "已放弃",
    refused: "已拒绝" },
  state: { online: "在线", away: "离开", offline: "离线", busy: "忙碌" },
  role: { agent: "坐席", supervisor: "班长", admin: "管理员", editor: "编辑" },
  channel: { webchat: "网页", wechat: "微信", phone: "电话", rest: "接口" },
  disposition: { resolved: "已解决", unresolved: "未解决", callback: "需回访", ticket: "转工单", invalid: "无效会话",
    user_cancelled: "用户取消排队", queue_timeout: "排队超时" },
  strategy: { least_busy: "接待最少优先", longest_idle: "空闲最久优先", round_robin: "轮流分配" },
  kind: { user: "用户", bot: "机器人", agent: "坐席", system: "系统", note: "内部备注" },
  ticket: { complaint: "投诉", report: "举报", suggestion: "建议" },
  taxpayer: { enterprise: "企业", individual: "个人", household: "个体工商户" },
  rating: { 1: "满意", 2: "一般", 3: "不满意", 0: "投诉" },
};
const label = (table, key) => (key == null ? "" : LABELS[table][key] ?? String(key));
const OPEN_STATUSES = ["queued", "assigned", "after_hours"];
const HIDDEN_SLOTS = new Set(["kb_candidates"]); // shown in their own section

const state = {
  me: null,
  cases: new Map(), // id -> case summary: the open cases I can see
  unread: new Set(), // case ids with user messages I have not looked at
  open: null, // the open conversation's context package
  shown: new Set(), // message ids already in the open conversation
  drafts: new Map(), // case id -> unsent reply text
  socket: null,
  retry: 1000,
  reconnectTimer: null,
  connectedOnce: false,
  overview: null,
  overviewTimer: null,
  sending: false,
};

const isSupervisor = () => ["supervisor", "admin"].includes(state.me?.role);
const canAccept = () => ["agent", "supervisor"].includes(state.me?.role);
const handlesChats = () => ["agent", "supervisor", "admin"].includes(state.me?.role);

// ------------------------------------------------------------------ small helpers

/** h("li", {class: "x", text: "…", onclick: f, "data-testid": "y"}, child, …): an element; null children skipped. */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const clockFormat = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit",
  second: "2-digit", hour12: false });
const dayFormat = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", hour12: false });
const timeOf = (iso) => (iso ? clockFormat.format(new Date(iso)) : "");
const dayOf = (iso) => (iso ? dayFormat.format(new Date(iso)) : "");
const pct = (x) => (typeof x === "number" ? `${Math.round(x * 100)}%` : "");

function since(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds}秒`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}分钟`;
  return `${Math.floor(seconds / 3600)}小时${Math.floor((seconds % 3600) / 60)}分`;
}

/** A span whose text is "<prefix><time since iso>", kept current by tickWaits(). */
const waitSpan = (prefix, iso) => h("span", { class: "wait", "data-since": iso, "data-prefix": prefix,
  text: prefix + since(iso) });

function tickWaits() {
  for (const node of document.querySelectorAll("[data-since]")) {
    node.textContent = node.dataset.prefix + since(node.dataset.since);
  }
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method, credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // an empty or non-JSON body
  }
  if (!response.ok) {
    if (response.status === 401 && path !== "/desk/api/login" && state.me) showLogin("登录已过期，请重新登录");
    throw new ApiError(response.status, data?.error, data?.message || `请求失败（${response.status}）`);
  }
  return data;
}

function toast(text, kind = "error") {
  const box = $("toast");
  box.textContent = text;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 6000 : 3500);
}

/** Run a user action; a failure is shown as a toast and gives undefined. */
async function act(work) {
  try {
    return await work();
  } catch (error) {
    toast(error.message || "操作失败，请重试");
    return undefined;
  }
}

/** Re-render part of the page without losing the keyboard focus of a row's control. */
function keepingFocus(render) {
  const active = document.activeElement;
  const row = active?.closest?.("[data-case-id]");
  const key = row && [row.dataset.caseId, active.dataset.testid];
  render();
  if (!key) return;
  const again = document.querySelector(`[data-case-id="${key[0]}"] [data-testid="${key[1]}"]`);
  again?.focus();
}

// ------------------------------------------------------------------ login and session

function showLogin(message) {
  disconnect();
  state.me = null;
  state.open = null;
  state.cases.clear();
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("login-username").focus();
}

async function login(event) {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) {
    $("login-error").textContent = "请输入用户名和密码";
    return;
  }
  try {
    state.me = await api("POST", "/desk/api/login", { username, password });
  } catch (error) {
    $("login-error").textContent = error.message;
    return;
  }
  $("login-password").value = "";
  enter();
}

async function logout() {
  await act(() => api("POST", "/desk/api/logout"));
  showLogin();
}

function enter() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("login-error").textContent = "";
  state.connectedOnce = false;
  $("tab-supervisor").hidden = !isSupervisor();
  $("desk-view").classList.toggle("editor", !handlesChats());
  renderMe();
  renderAll();
  showView("desk");
  if (handlesChats()) {
    loadCanned();
    connect();
  }
  (canAccept() ? $("state-select") : $("kb-query")).focus();
}

function renderMe() {
  const me = state.me;
  $("me-name").textContent = `${me.name}（${label("role", me.role)}）`;
  $("state-label").hidden = !canAccept();
  $("state-select").value = me.state;
  $("state-select").className = `state-${me.state}`;
  $("load").textContent = canAccept() ? `接待 ${me.active_chats}/${me.max_chats}` : "";
}

async function changeState() {
  const me = await act(() => api("POST", "/desk/api/state", { state: $("state-select").value }));
  if (me) state.me = me;
  renderMe();
  renderLists();
}

async function loadCanned() {
  const data = await act(() => api("GET", "/desk/api/canned"));
  const select = $("canned");
  select.replaceChildren(h("option", { value: "", text: "快捷回复…" }));
  for (const text of data?.items || []) select.append(h("option", { value: text, text }));
}

// ------------------------------------------------------------------ live events

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/desk/ws`;
  const socket = new WebSocket(url);
  let opened = false;
  state.socket = socket;
  socket.onmessage = (event) => handleEvent(JSON.parse(event.data));
  socket.onopen = () => {
    opened = true;
    state.retry = 1000;
    setConnection(true);
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return; // logged out, or replaced
    state.socket = null;
    setConnection(false);
    if (event.code === 4401) {
      showLogin("登录已过期，请重新登录");
      return;
    }
    // A refused handshake (session gone) looks like any network failure: ask, and a 401 shows the login.
    if (!opened) api("GET", "/desk/api/me").catch(() => {});
    // Back off (1 s, 2 s, 4 s … 30 s, with jitter) until the service answers again.
    state.reconnectTimer = setTimeout(connect, state.retry * (0.75 + Math.random() / 2));
    state.retry = Math.min(state.retry * 2, 30000);
  };
}

function disconnect() {
  clearTimeout(state.reconnectTimer);
  const socket = state.socket;
  state.socket = null;
  socket?.close();
  setConnection(null);
}

function setConnection(up) {
  const node = $("connection");
  node.textContent = up === null ? "" : up ? "● 已连接" : "● 连接中断，正在重连…";
  node.className = `connection ${up ? "up" : "down"}`;
}

/** Which cases this user keeps in the lists: supervisors every open one, agents theirs and their queues'. */
function keeps(summary) {
  if (!OPEN_STATUSES.includes(summary.status)) return false;
  if (isSupervisor()) return true;
  return (summary.status === "queued" && state.me.groups.includes(summary.group)) ||
    summary.agent_id === state.me.id || summary.offered_to === state.me.id;
}

function upsertCase(summary) {
  if (keeps(summary)) state.cases.set(summary.id, summary);
  else {
    state.cases.delete(summary.id);
    state.unread.delete(summary.id);
  }
  if (state.open?.case.id === summary.id) {
    state.open.case = summary;
    renderConvHead();
  }
}

async function refreshCases() {
  const data = await act(() => api("GET", "/desk/api/cases"));
  if (!data) return;
  state.cases.clear();
  data.items.forEach(upsertCase);
  renderLists();
}

function handleEvent(event) {
  if (!state.me) return;
  switch (event.type) {
    case "hello": {
      const reconnected = state.connectedOnce;
      state.connectedOnce = true;
      state.me = event.me;
      state.cases.clear();
      event.cases.forEach(upsertCase);
      renderMe();
      renderLists();
      if (reconnected) { // events were missed while the socket was down: read the state again
        refreshCases();
        if (state.open) openCase(state.open.case.id, false);
      }
      scheduleOverview();
      break;
    }
    case "case": {
      const before = state.cases.get(event.case.id);
      const offeredToMe = event.case.status === "queued" && event.case.offered_to === state.me.id;
      if (offeredToMe && before?.offered_to !== state.me.id) {
        toast(`新会话，请接入：${event.case.taxpayer || "访客"}（${event.case.group_name || ""}）`, "offer");
      } else if (!before && event.case.status === "assigned" && event.case.agent_id === state.me.id) {
        toast(`有会话转接给您：${event.case.taxpayer || "访客"}`, "offer"); // agents only see others' cases once theirs
      }
      upsertCase(event.case);
      renderLists();
      scheduleOverview();
      break;
    }
    case "message":
      if (state.open && event.case_id === state.open.case.id) appendMessage(event.message, true);
      else if (state.cases.has(event.case_id) && event.message.kind === "user") {
        state.unread.add(event.case_id);
        renderLists();
      }
      break;
    case "agent":
      if (event.agent.id === state.me.id) {
        state.me = { ...state.me, ...event.agent };
        renderMe();
        renderLists();
      }
      scheduleOverview();
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------------ case lists

const byQueue = (a, b) => b.priority - a.priority || new Date(a.enqueued_at) - new Date(b.enqueued_at) || a.id - b.id;

function caseItem(c) {
  const queued = c.status === "queued";
  const offered = queued && c.offered_to === state.me.id && state.me.state === "online"; // busy/away: cannot take it
  const selected = state.open?.case.id === c.id;
  return h("li", { class: `case${offered ? " offer" : ""}${selected ? " selected" : ""}`, "data-case-id": c.id,
    "data-conversation-id": c.conversation_id, "data-testid": queued ? "queue-item" : "my-case" },
  h("button", { type: "button", class: "case-open", "data-testid": "case-open",
    "aria-current": selected ? "true" : null,
    onclick: () => openCase(c.id) },
  h("span", { class: "case-line" },
    c.vip && h("span", { class: "badge vip", text: "VIP" }),
    h("span", { class: "who", text: c.taxpayer || "访客" }),
    c.group_name && h("span", { class: "badge", text: c.group_name }),
    state.unread.has(c.id) && h("span", { class: "unread", text: "新消息" })),
  h("span", { class: "case-line sub" },
    queued ? waitSpan("等待 ", c.enqueued_at) : waitSpan("已服务 ", c.assigned_at),
    ` · ${label("channel", c.channel)} · ${label("reason", c.reason)}`),
  h("span", { class: "preview", text: c.preview || "" })),
  offered && h("span", { class: "offer-text", text: "新会话，请接入" }),
  queued && canAccept() && h("button", { type: "button", class: offered ? "accept primary" : "accept",
    "data-testid": "accept", onclick: () => accept(c.id), text: "接入" }));
}

function fillList(id, items, empty) {
  $(id).replaceChildren(...(items.length ? items : [h("li", { class: "none", text: empty })]));
}

function renderLists() {
  if (!state.me) return;
  const all = [...state.cases.values()];
  const queued = all.filter((c) => c.status === "queued").sort(byQueue);
  const mine = all.filter((c) => c.status === "assigned" && c.agent_id === state.me.id)
    .sort((a, b) => new Date(a.assigned_at) - new Date(b.assigned_at));
  keepingFocus(() => {
    fillList("queue-list", queued.map(caseItem), "暂无排队的会话");
    fillList("mine-list", mine.map(caseItem), "暂无接待中的会话");
  });
  $("queue-count").textContent = queued.length ? `(${queued.length})` : "";
  $("mine-count").textContent = mine.length ? `(${mine.length})` : "";
  const offers = state.me.state === "online" ? queued.filter((c) => c.offered_to === state.me.id).length : 0;
  document.title = offers ? `【${offers}个新会话】坐席工作台` : "坐席工作台 · 12366";
  if (isSupervisor()) renderCasesTable();
}

function renderAll() {
  renderLists();
  renderConversation();
  renderContext();
}

// ------------------------------------------------------------------ the conversation

async function openCase(id, focusReply = true) {
  const detail = await act(() => api("GET", `/desk/api/cases/${id}`));
  if (!detail) return;
  saveDraft();
  const same = state.open?.case.id === id;
  state.open = detail;
  state.shown = new Set();
  state.unread.delete(id);
  renderAll();
  if (!same) {
    $("reply-box").value = state.drafts.get(id) || "";
    $("note-toggle").checked = false;
    updateNoteMode();
  }
  if (focusReply && !$("composer").hidden) $("reply-box").focus();
}

function saveDraft() {
  if (state.open) state.drafts.set(state.open.case.id, $("reply-box").value);
}

async function accept(id) {
  const summary = await act(() => api("POST", `/desk/api/cases/${id}/accept`));
  if (!summary) {
    refreshCases(); // taken by someone else, or gone
    return;
  }
  upsertCase(summary);
  renderLists();
  await openCase(id);
}

async function takeOver(id) {
  const summary = await act(() => api("POST", `/desk/api/cases/${id}/takeover`));
  if (!summary) return;
  upsertCase(summary);
  showView("desk");
  await openCase(id);
}

function renderConvHead() {
  const c = state.open.case;
  const me = state.me;
  $("conv-title").replaceChildren(c.vip ? h("span", { class: "badge vip", text: "VIP" }) : "",
    `${c.taxpayer || "访客"} · ${c.reference || `#${c.id}`}`);
  const parts = [label("status", c.status)];
  if (c.agent) parts.push(`坐席：${c.agent}`);
  if (c.group_name) parts.push(`技能组：${c.group_name}`);
  if (c.disposition) parts.push(`结束原因：${label("disposition", c.disposition)}`);
  if (c.rating != null) parts.push(`用户评价：${label("rating", c.rating)}`);
  $("conv-sub").textContent = parts.join(" · ");
  const mine = c.status === "assigned" && c.agent_id === me.id;
  const wasHidden = $("composer").hidden;
  $("composer").hidden = !mine;
  if (!wasHidden && !mine && $("composer").contains(document.activeElement)) $("messages").focus();
  $("conv-accept").hidden = !(c.status === "queued" && canAccept());
  $("conv-takeover").hidden = !(me.role === "supervisor" && ["queued", "assigned"].includes(c.status) &&
    c.agent_id !== me.id);
  $("conversation").classList.toggle("readonly", !mine);
}

function renderConversation() {
  const detail = state.open;
  $("conv-empty").hidden = Boolean(detail);
  $("conv-body").hidden = !detail;
  if (!detail) return;
  renderConvHead();
  const box = $("messages");
  box.replaceChildren();
  const context = detail.context || {};
  const transcript = context.transcript || [];
  if (transcript.length || context.dropped_turns) {
    box.append(h("div", { class: "divider", text: "转人工前与智能助手的对话" }));
    if (context.dropped_turns) {
      box.append(h("div", { class: "divider", text: `（更早的 ${context.dropped_turns} 条记录未随转接传递）` }));
    }
    for (const turn of transcript) box.append(turnNode(turn));
    box.append(h("div", { class: "divider handoff", text: `转人工 · ${label("reason", detail.case.reason)}` }));
  }
  for (const message of detail.messages) appendMessage(message, false);
  box.scrollTop = box.scrollHeight;
}

/** A turn of the bot conversation before the handoff, with NLU's reading of user turns in small text. */
function turnNode(turn) {
  const info = [];
  if (turn.role === "user") {
    const ranking = (turn.intent_ranking || []).slice(0, 3);
    if (ranking.length) info.push(`意图 ${ranking.map((r) => `${r.name} ${pct(r.confidence)}`).join(" / ")}`);
    else if (turn.intent) info.push(`意图 ${turn.intent} ${pct(turn.confidence)}`);
    if (turn.entities?.length) info.push(`实体 ${turn.entities.map((e) => `${e.entity}=${e.value}`).join("，")}`);
    if (turn.asr_confidence != null) info.push(`语音识别置信度 ${pct(turn.asr_confidence)}`);
  }
  if (turn.buttons?.length) info.push(`按钮：${turn.buttons.map((b) => b.title).join(" / ")}`);
  return bubble(turn.role === "user" ? "user" : "bot", turn.text, { at: turn.at, info, testid: "transcript-turn" });
}

function bubble(kind, text, { at, author, info = [], testid = "message" } = {}) {
  return h("div", { class: `msg ${kind}`, "data-testid": testid, "data-kind": kind },
    h("div", { class: "meta" }, kind === "note" ? h("strong", { text: "内部备注" }) : label("kind", kind),
      author ? ` · ${author}` : "", at ? ` · ${timeOf(at)}` : ""),
    h("div", { class: "text", text }),
    info.length ? h("div", { class: "info" }, info.map((line) => h("span", { text: line }))) : null);
}

function appendMessage(message, live) {
  if (state.shown.has(message.id)) return;
  state.shown.add(message.id);
  const info = [];
  const payload = message.payload || {};
  if (payload.asr_confidence != null) info.push(`语音识别置信度 ${pct(payload.asr_confidence)}`);
  if (payload.buttons?.length) info.push(`按钮：${payload.buttons.map((b) => b.title).join(" / ")}`);
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  box.append(bubble(message.kind, message.text, { at: message.at, author: message.author, info }));
  if (!live || atBottom || message.kind === "agent" || message.kind === "note") box.scrollTop = box.scrollHeight;
}

function updateNoteMode() {
  const note = $("note-toggle").checked;
  $("composer").classList.toggle("note-mode", note);
  $("reply-box").placeholder = note ? "内部备注，用户看不到；Enter 保存" : "输入回复，Enter 发送，Shift+Enter 换行";
  document.querySelector('[data-testid="send"]').textContent = note ? "保存备注" : "发送";
}

async function sendReply(event) {
  event?.preventDefault();
  const box = $("reply-box");
  const text = box.value.trim();
  if (!text || !state.open || state.sending) return;
  const id = state.open.case.id;
  state.sending = true;
  try {
    const message = await act(() => api("POST", `/desk/api/cases/${id}/messages`,
      { text, note: $("note-toggle").checked }));
    if (!message) return;
    box.value = "";
    state.drafts.delete(id);
    $("note-toggle").checked = false;
    updateNoteMode();
    if (state.open?.case.id === id) appendMessage(message, true);
  } finally {
    state.sending = false;
  }
}

function replyKey(event) {
  // Enter sends; Shift+Enter is a new line; Enter that confirms an IME composition (拼音输入) is not a send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) sendReply(event);
}

function insertReply(text) {
  if ($("composer").hidden) {
    toast("请先接入一个会话，再插入回复");
    return;
  }
  const box = $("reply-box");
  const start = box.selectionStart ?? box.value.length;
  box.setRangeText(text, start, box.selectionEnd ?? start, "end");
  box.focus();
}

async function closeCase() {
  const disposition = $("disposition").value;
  if (!disposition) {
    toast("请先选择结束原因");
    $("disposition").focus();
    return;
  }
  const summary = await act(() => api("POST", `/desk/api/cases/${state.open.case.id}/close`, { disposition }));
  if (!summary) return;
  $("disposition").value = "";
  state.drafts.delete(summary.id);
  upsertCase(summary);
  renderLists();
  toast(`会话已结束（${label("disposition", disposition)}）`, "info");
}

// ------------------------------------------------------------------ transfer and blacklist dialogs

async function openTransfer(caseId) {
  const targets = await act(() => api("GET", "/desk/api/agents"));
  if (!targets) return;
  const dialog = $("transfer-dialog");
  dialog.dataset.caseId = caseId;
  $("transfer-group").replaceChildren(...targets.groups.map((g) => h("option", { value: g.code, text: g.name })));
  const owner = state.cases.get(caseId)?.agent_id;
  const agents = targets.agents.filter((a) => a.id !== owner && a.active_chats < a.max_chats);
  $("transfer-agent").replaceChildren(...(agents.length
    ? agents.map((a) => h("option", { value: a.id,
      text: `${a.name}（${label("state", a.state)} ${a.active_chats}/${a.max_chats}）` }))
    : [h("option", { value: "", text: "暂无可接收的坐席" })]));
  dialog.querySelector('input[value="agent"]').disabled = !agents.length;
  dialog.querySelector('input[value="group"]').checked = true;
  $("transfer-note").value = "";
  syncTransferTarget();
  dialog.showModal();
}

function syncTransferTarget() {
  const toAgent = $("transfer-dialog").querySelector('input[value="agent"]').checked;
  $("transfer-agent").disabled = !toAgent;
  $("transfer-group").disabled = toAgent;
}

async function confirmTransfer(event) {
  event.preventDefault();
  const dialog = $("transfer-dialog");
  dialog.close();
  const caseId = Number(dialog.dataset.caseId);
  const note = $("transfer-note").value.trim() || null;
  const body = dialog.querySelector('input[value="agent"]').checked
    ? { agent_id: Number($("transfer-agent").value), note } : { group: $("transfer-group").value, note };
  const summary = await act(() => api("POST", `/desk/api/cases/${caseId}/transfer`, body));
  if (!summary) return;
  upsertCase(summary);
  if (state.open?.case.id === caseId && !keeps(summary)) { // no longer mine to see
    state.open = null;
    renderAll();
  } else renderLists();
  toast("已转接", "info");
}

function openBlacklist(caseId) {
  const dialog = $("blacklist-dialog");
  dialog.dataset.caseId = caseId;
  $("blacklist-reason").value = "";
  dialog.showModal();
}

async function confirmBlacklist(event) {
  event.preventDefault();
  const dialog = $("blacklist-dialog");
  dialog.close();
  const body = { duration: $("blacklist-duration").value, reason: $("blacklist-reason").value.trim() || null };
  const done = await act(() => api("POST", `/desk/api/cases/${dialog.dataset.caseId}/blacklist`, body));
  if (done) toast("已加入黑名单", "info");
}

// ------------------------------------------------------------------ context panel

function section(title, ...content) {
  return h("section", { class: "ctx" }, h("h3", { text: title }), ...content);
}

function pairs(rows) {
  const shown = rows.filter(([, value]) => value != null && value !== "");
  return h("dl", {}, shown.flatMap(([name, value]) => [h("dt", { text: name }), h("dd", {}, value)]));
}

function slotText(value) {
  if (typeof value === "boolean") return value ? "是" : "否";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function renderContext() {
  const body = $("context-body");
  body.replaceChildren();
  const detail = state.open;
  if (!detail) return;
  const c = detail.case;
  const context = detail.context || {};
  body.append(section("转人工信息", pairs([
    ["原因", label("reason", c.reason)],
    ["渠道", label("channel", c.channel)],
    ["渠道用户", c.channel_user_id || c.conversation_id],
    ["最后意图", context.intent],
    ["转入时间", dayOf(c.enqueued_at)],
    ["联系电话", detail.contact_phone],
  ])));

  const payer = detail.taxpayer;
  body.append(section("纳税人", payer ? [
    payer.category === "VIP" ? h("span", { class: "badge vip", text: "VIP 纳税人" }) : null,
    pairs([["名称", payer.name], ["类型", label("taxpayer", payer.kind)], ["识别号", payer.identifier],
      ["手机", payer.phone], ["主管税务机关", payer.tax_office]]),
  ] : h("p", { class: "muted", text: "身份未核验" })));

  const slots = Object.entries(context.slots || {}).filter(([name]) => !HIDDEN_SLOTS.has(name));
  if (slots.length) body.append(section("对话信息（槽位）", pairs(slots.map(([name, value]) => [name, slotText(value)]))));

  const candidates = context.kb_candidates || [];
  body.append(section("知识库候选", candidates.length
    ? h("ol", { class: "candidates", "data-testid": "kb-candidates" }, candidates.map((k) => h("li", {},
      h("button", { type: "button", class: "link", title: "在知识库中检索", onclick: () => kbSearch(k.title || k.id),
        text: k.title || k.id }),
      h("span", { class: "score", text: pct(k.score) }))))
    : h("p", { class: "muted", "data-testid": "kb-candidates", text: "无" })));

  if (detail.earlier.length) {
    body.append(section("以往转人工", h("ul", { class: "plain" }, detail.earlier.map((e) => h("li", {},
      `${dayOf(e.enqueued_at || e.closed_at)} ${label("status", e.status)}`,
      e.disposition ? `（${label("disposition", e.disposition)}）` : "", e.agent ? ` · ${e.agent}` : "",
      e.preview ? h("div", { class: "muted", text: e.preview }) : null)))));
  }
  if (detail.tickets.length) {
    body.append(section("工单", h("ul", { class: "plain" }, detail.tickets.map((t) => h("li", {},
      `${t.reference} ${label("ticket", t.kind)} · ${t.status} · ${dayOf(t.created_at)}`,
      t.subject ? h("div", { class: "muted", text: t.subject }) : null)))));
  }
}

// ------------------------------------------------------------------ agent assist

async function kbSearch(query) {
  const q = (query ?? $("kb-query").value).trim();
  if (!q) return;
  $("kb-query").value = q;
  const data = await act(() => api("GET", `/desk/api/kb?q=${encodeURIComponent(q)}`));
  if (!data) return;
  $("kb-results").replaceChildren(...(data.items.length ? data.items.map((item) => h("li", { "data-testid": "kb-result" },
    h("div", { class: "kb-title" },
      h("strong", { text: item.title }), h("span", { class: "score", text: pct(item.score) })),
    h("p", { class: "kb-answer", text: item.answer }),
    item.citation && h("p", { class: "citation", text: `依据：${item.citation}` }),
    handlesChats() && h("button", { type: "button", "data-testid": "kb-insert", text: "插入回复",
      onclick: () => insertReply(item.citation ? `${item.answer}\n（依据：${item.citation}）` : item.answer) })))
    : [h("li", { class: "none", text: "没有找到相关条目" })]));
}

// ------------------------------------------------------------------ supervisor view

function showView(name) {
  const desk = name === "desk";
  $("desk-view").hidden = !desk;
  $("supervisor-view").hidden = desk;
  $("tab-desk").setAttribute("aria-selected", String(desk));
  $("tab-supervisor").setAttribute("aria-selected", String(!desk));
  $("tab-desk").tabIndex = desk ? 0 : -1;
  $("tab-supervisor").tabIndex = desk ? -1 : 0;
  if (!desk) loadOverview();
}

function tabKey(event) {
  if (!["ArrowLeft", "ArrowRight"].includes(event.key) || $("tab-supervisor").hidden) return;
  const next = event.target.id === "tab-desk" ? "supervisor" : "desk";
  showView(next);
  $(`tab-${next}`).focus();
}

/** Refresh the supervisor's overview soon (events come in bursts). */
function scheduleOverview() {
  if (!isSupervisor() || $("supervisor-view").hidden || state.overviewTimer) return;
  state.overviewTimer = setTimeout(() => {
    state.overviewTimer = null;
    loadOverview();
  }, 500);
}

async function loadOverview() {
  if (!isSupervisor()) return;
  try {
    state.overview = await api("GET", "/desk/api/overview");
  } catch (error) {
    toast(error.message);
    return;
  }
  renderOverview();
}

function renderOverview() {
  const view = state.overview;
  $("groups-body").replaceChildren(...view.groups.map((g) => h("tr", { class: g.waiting ? "waiting" : null },
    h("td", { text: g.name }), h("td", { text: label("strategy", g.strategy) }),
    h("td", { class: "num", text: g.waiting }),
    h("td", {}, g.oldest ? waitSpan("", g.oldest) : "—"))));
  $("agents-body").replaceChildren(...view.agents.map((a) => h("tr", {},
    h("td", { text: a.name }), h("td", { text: label("role", a.role) }),
    h("td", {}, h("span", { class: `pill state-${a.state}`, text: label("state", a.state) }), " ",
      a.state_since ? waitSpan("", a.state_since) : ""),
    h("td", { class: "num", text: `${a.active_chats}/${a.max_chats}` }),
    h("td", { text: a.groups.join("、") }))));
  renderCasesTable();
}

function renderCasesTable() {
  const me = state.me;
  const rows = [...state.cases.values()].sort(byQueue).map((c) => h("tr", { "data-case-id": c.id,
    "data-testid": "case-row" },
    h("td", {}, c.vip ? h("span", { class: "badge vip", text: "VIP" }) : "", c.reference || `#${c.id}`),
    h("td", { text: label("status", c.status) }),
    h("td", { text: c.group_name || "" }),
    h("td", { text: c.agent || (c.offered_to ? "分配中" : "—") }),
    h("td", {}, c.status === "assigned" ? waitSpan("服务 ", c.assigned_at) : waitSpan("等待 ", c.enqueued_at)),
    h("td", { class: "preview", text: c.preview || "" }),
    h("td", { class: "actions" },
      h("button", { type: "button", "data-testid": "monitor", text: "监听",
        onclick: () => { showView("desk"); openCase(c.id, false); } }),
      me.role === "supervisor" && ["queued", "assigned"].includes(c.status) && c.agent_id !== me.id &&
        h("button", { type: "button", "data-testid": "takeover", text: "接管", onclick: () => takeOver(c.id) }),
      c.status === "assigned" && h("button", { type: "button", "data-testid": "transfer-case", text: "转接",
        onclick: () => openTransfer(c.id) }),
      h("button", { type: "button", class: "danger", "data-testid": "blacklist", text: "拉黑",
        onclick: () => openBlacklist(c.id) }))));
  keepingFocus(() => $("all-body").replaceChildren(...(rows.length ? rows
    : [h("tr", {}, h("td", { colspan: 7, class: "none", text: "暂无进行中的会话" }))])));
}

// ------------------------------------------------------------------ start

function bind() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("state-select").addEventListener("change", changeState);
  $("tab-desk").addEventListener("click", () => showView("desk"));
  $("tab-supervisor").addEventListener("click", () => showView("supervisor"));
  $("tab-desk").addEventListener("keydown", tabKey);
  $("tab-supervisor").addEventListener("keydown", tabKey);
  $("composer").addEventListener("submit", sendReply);
  $("reply-box").addEventListener("keydown", replyKey);
  $("note-toggle").addEventListener("change", updateNoteMode);
  $("canned").addEventListener("change", (event) => {
    if (event.target.value) insertReply(event.target.value);
    event.target.value = "";
  });
  $("close-case").addEventListener("click", closeCase);
  $("transfer-open").addEventListener("click", () => openTransfer(state.open.case.id));
  $("conv-accept").addEventListener("click", () => accept(state.open.case.id));
  $("conv-takeover").addEventListener("click", () => takeOver(state.open.case.id));
  $("kb-form").addEventListener("submit", (event) => {
    event.preventDefault();
    kbSearch();
  });
  for (const radio of $("transfer-dialog").querySelectorAll('input[name="target"]')) {
    radio.addEventListener("change", syncTransferTarget);
  }
  $("transfer-form").addEventListener("submit", confirmTransfer);
  $("blacklist-form").addEventListener("submit", confirmBlacklist);
  for (const cancel of document.querySelectorAll("[data-cancel]")) {
    cancel.addEventListener("click", () => cancel.closest("dialog").close());
  }
  setInterval(tickWaits, 5000);
  setInterval(() => { if (!$("supervisor-view").hidden) loadOverview(); }, 15000);
}

async function start() {
  bind();
  try {
    state.me = await api("GET", "/desk/api/me");
  } catch {
    showLogin();
    return;
  }
  enter();
}

start();
