/* 12366 web chat client: one WebSocket (/chat/ws) with reconnect and resume.
 *
 * Every message the user sends gets a client id and stays in an outbox (kept in localStorage) until the server
 * acknowledges it; after a reconnect (or a reload) the outbox is sent again with the same ids and the server answers
 * each id once. The server replays what came after the last message id this page has, so nothing is lost or shown
 * twice. Text from the server is only ever put into the page as text nodes (never parsed as HTML).
 */
(() => {
  "use strict";

  const SESSION_KEY = "taxbot.webchat.session";
  const OUTBOX_KEY = "taxbot.webchat.outbox";
  const PING_EVERY = 20000;
  const PONG_WITHIN = 8000;
  const EMBEDDED = new URLSearchParams(location.search).has("embed");

  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const scroller = $("scroller");
  const input = $("input");
  const hint = $("hint");
  const typing = $("typing");
  const connection = $("connection");
  const announcer = $("announcer");

  // ------------------------------------------------------------------ storage (may be unavailable)

  const store = {
    get(key) {
      try { return window.localStorage.getItem(key); } catch (e) { return null; }
    },
    set(key, value) {
      try { window.localStorage.setItem(key, value); } catch (e) { /* private mode: this page only */ }
    },
  };

  function randomId(length) {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const bytes = new Uint8Array(length);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
  }

  let session = store.get(SESSION_KEY);
  if (!session || !/^[A-Za-z0-9_-]{16,64}$/.test(session)) {
    session = randomId(32);
    store.set(SESSION_KEY, session);
  }

  const state = {
    socket: null,
    welcomed: false,
    replaying: false,
    attempts: 0,
    reconnectTimer: 0,
    pingTimer: 0,
    pongTimer: 0,
    typingTimer: 0,
    maxChars: 2000,
    lastSeen: 0,
    shown: new Map(),    // server message id -> element
    pending: new Map(),  // client id -> {id, text, display, at, status, el}
    handoff: null,
    titles: new Map(),   // payload -> title, from the latest assistant buttons (a click shows the title)
  };

  // ------------------------------------------------------------------ rendering (text nodes only)

  const WHO = { bot: "智能助手", agent: "人工客服", system: "系统通知", user: "我" };
  const URL_RE = /https?:\/\/[^\s<>"'，。；、）)】]+/g;

  function appendText(parent, text) {
    // Links become <a> elements whose text and href are set as properties; everything else is a text node.
    let last = 0;
    for (const match of text.matchAll(URL_RE)) {
      if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
      const link = document.createElement("a");
      link.href = match[0];
      link.textContent = match[0];
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      parent.append(link);
      last = match.index + match[0].length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  function clock(iso) {
    const moment = iso ? new Date(iso) : new Date();
    if (Number.isNaN(moment.getTime())) return "";
    return moment.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function element(kind, text, who, iso) {
    const el = document.createElement("div");
    el.className = `msg ${kind}`;
    el.dataset.testid = "message";
    el.dataset.kind = kind;
    const label = document.createElement("span");
    label.className = kind === "user" || kind === "system" ? "sr-only" : "who";
    label.textContent = `${who}：`;
    el.append(label);
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.dataset.testid = "bubble";
    appendText(bubble, text);
    el.append(bubble);
    const time = document.createElement("time");
    if (iso) time.dateTime = iso;
    time.textContent = clock(iso);
    el.append(time);
    return el;
  }

  function displayOf(message) {
    if (message.kind !== "user") return message.text;
    return state.titles.get(message.text) || message.text;
  }

  function renderServer(message) {
    const who = message.kind === "agent" ? `人工客服${message.author ? " " + message.author : ""}` : WHO[message.kind] || "";
    const el = element(message.kind, displayOf(message), who, message.at);
    el.dataset.id = String(message.id);
    if (message.client_id) el.dataset.clientId = message.client_id;
    const buttons = (message.buttons || []).filter((b) => b && (b.title || b.payload));
    if (buttons.length) {
      state.titles = new Map(buttons.map((b) => [String(b.payload), String(b.title || b.payload)]));
      const group = document.createElement("div");
      group.className = "buttons";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "可选回复");
      for (const b of buttons) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "quick";
        button.dataset.testid = "quick-reply";
        button.textContent = String(b.title || b.payload);
        button.addEventListener("click", () => send(String(b.payload || b.title), String(b.title || b.payload)));
        group.append(button);
      }
      el.insertBefore(group, el.querySelector("time"));
    }
    return el;
  }

  function insertByServerId(el, id) {
    // Server messages in id order; messages still waiting for the server stay below them.
    for (const child of log.children) {
      const other = child.dataset.id ? Number(child.dataset.id) : Infinity;
      if (other > id) {
        log.insertBefore(el, child);
        return;
      }
    }
    log.append(el);
  }

  function refreshButtons() {
    // Only the buttons after the user's latest message can still be pressed.
    let answered = false;
    const children = Array.from(log.children).reverse();
    for (const child of children) {
      if (child.dataset.kind === "user") answered = true;
      for (const button of child.querySelectorAll(".quick")) button.disabled = answered;
    }
  }

  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function scrollDown(force) {
    if (force || atBottom()) scroller.scrollTop = scroller.scrollHeight;
  }

  // ------------------------------------------------------------------ messages from the server

  function showMessage(message) {
    if (typeof message.id !== "number" || state.shown.has(message.id)) return;
    state.lastSeen = Math.max(state.lastSeen, message.id);
    const follow = atBottom();
    const mine = message.client_id ? state.pending.get(message.client_id) : null;
    if (mine) {
      mine.el.remove();
      state.pending.delete(message.client_id);
      saveOutbox();
    }
    const el = renderServer(message);
    insertByServerId(el, message.id);
    state.shown.set(message.id, el);
    if (message.kind === "bot") setTyping(false);
    refreshButtons();
    scrollDown(follow || Boolean(mine));
    if (message.kind !== "user" && !state.replaying && EMBEDDED) {
      window.parent.postMessage({ type: "taxchat:unread" }, "*");
    }
  }

  function acknowledged(clientId, messageId) {
    const mine = state.pending.get(clientId);
    if (!mine) return;
    state.pending.delete(clientId);
    saveOutbox();
    if (typeof messageId === "number" && !state.shown.has(messageId)) {
      // The stored copy has not come yet: this bubble stands for it.
      mine.el.dataset.id = String(messageId);
      state.shown.set(messageId, mine.el);
      setStatus(mine, "");
    } else {
      mine.el.remove();
    }
  }

  function setTyping(on) {
    clearTimeout(state.typingTimer);
    const follow = atBottom();
    typing.hidden = !on;
    if (on) {
      state.typingTimer = setTimeout(() => { typing.hidden = true; }, 30000);
      scrollDown(follow);
    }
  }

  function showHandoff(handoff) {
    const previous = state.handoff;
    state.handoff = handoff;
    const banner = $("handoff");
    const text = $("handoff-text");
    const cancel = $("cancel-queue");
    if (!handoff) {
      banner.hidden = true;
      banner.dataset.status = "";
      text.textContent = "";
      if (previous && previous.status === "assigned") announce("人工服务已结束");
      return;
    }
    banner.hidden = false;
    banner.dataset.status = handoff.status;
    cancel.hidden = handoff.status !== "queued";
    if (handoff.status === "queued") {
      const where = handoff.position > 1 ? `，您前面还有${handoff.position - 1}位`
        : handoff.position === 1 ? "，马上就轮到您了" : "";
      text.textContent = `正在为您转接人工客服${where}。`;
    } else if (handoff.status === "assigned") {
      text.textContent = `人工客服${handoff.agent ? " " + handoff.agent + " " : ""}正在为您服务。`;
    } else if (handoff.status === "after_hours") {
      text.textContent = "现在是非工作时间：请留言，写明问题和联系电话，工作人员会在工作时间联系您。";
    } else {
      text.textContent = "";
    }
  }

  function announce(text) {
    announcer.textContent = "";
    setTimeout(() => { announcer.textContent = text; }, 50);
  }

  function showHint(text, error) {
    hint.textContent = text;
    hint.classList.toggle("error", Boolean(error));
  }

  // ------------------------------------------------------------------ the outbox

  function saveOutbox() {
    const items = Array.from(state.pending.values())
      .filter((p) => p.status !== "refused")
      .map(({ id, text, display, at, status }) => ({ id, text, display, at, failed: status === "failed" }));
    store.set(OUTBOX_KEY, JSON.stringify({ session, items }));
  }

  function loadOutbox() {
    try {
      const saved = JSON.parse(store.get(OUTBOX_KEY) || "null");
      if (!saved || saved.session !== session || !Array.isArray(saved.items)) return;
      for (const item of saved.items) {
        if (typeof item.id === "string" && typeof item.text === "string") {
          addPending(item.id, item.text, String(item.display || item.text), item.at, item.failed ? "failed" : "waiting");
        }
      }
    } catch (e) { /* a broken entry: start empty */ }
  }

  function setStatus(pending, status, note) {
    pending.status = status;
    pending.el.dataset.status = status;
    const line = pending.el.querySelector(".status");
    line.textContent = "";
    const words = { sending: "发送中…", waiting: "等待网络恢复后自动发送", failed: note || "发送失败", refused: note || "未发送" };
    if (!status) return;
    line.append(document.createTextNode(words[status] || ""));
    if (status === "failed") {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = "重发";
      retry.setAttribute("aria-label", "重新发送这条消息");
      retry.addEventListener("click", () => transmit(pending));
      line.append(retry);
    }
  }

  function addPending(id, text, display, at, status) {
    const el = element("user", display, WHO.user, at ? new Date(at).toISOString() : null);
    el.dataset.clientId = id;
    const line = document.createElement("span");
    line.className = "status";
    line.dataset.testid = "message-status";
    el.append(line);
    log.append(el);
    const pending = { id, text, display, at: at || Date.now(), status, el };
    state.pending.set(id, pending);
    setStatus(pending, status);
    return pending;
  }

  function send(text, display) {
    const clean = text.trim();
    if (!clean) return;
    if (clean.length > state.maxChars) {
      showHint(`消息太长了，请控制在${state.maxChars}字以内`, true);
      return;
    }
    showHint("");
    const pending = addPending(`m${randomId(20)}`, clean, display || clean, Date.now(), "waiting");
    saveOutbox();
    refreshButtons();
    scrollDown(true);
    transmit(pending);
  }

  function transmit(pending) {
    const socket = state.socket;
    if (socket && state.welcomed && socket.readyState === WebSocket.OPEN) {
      setStatus(pending, "sending");
      socket.send(JSON.stringify({ type: "message", id: pending.id, text: pending.text }));
    } else {
      setStatus(pending, "waiting");
    }
    saveOutbox();
  }

  function failed(clientId, code, message, retryAfter) {
    const pending = state.pending.get(clientId);
    if (!pending) return;
    if (code === "unavailable") {
      setStatus(pending, "waiting");
      setTimeout(() => { if (state.pending.get(clientId) === pending) transmit(pending); }, 5000);
    } else if (code === "rate_limited") {
      setStatus(pending, "failed", `发送太频繁，请${retryAfter || 10}秒后重发`);
    } else {
      setStatus(pending, "refused", message || "未发送");
      state.pending.delete(clientId);
    }
    saveOutbox();
  }

  // ------------------------------------------------------------------ the socket

  function setConnection(status) {
    connection.dataset.state = status;
    connection.textContent = { online: "已连接", connecting: "正在连接…", offline: "连接已断开，正在重连…" }[status];
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.socket) return;
    setConnection(state.attempts ? "offline" : "connecting");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let socket;
    try {
      socket = new WebSocket(`${scheme}${location.host}/chat/ws`);
    } catch (e) {
      reconnectLater();
      return;
    }
    state.socket = socket;
    state.welcomed = false;
    clearTimeout(state.pongTimer);
    state.pongTimer = setTimeout(() => { // no welcome in time: the network swallowed the handshake
      if (state.socket === socket && !state.welcomed) { dropped(); reconnectLater(); }
    }, 10000);
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "hello", session, last_seen: state.lastSeen }));
    });
    socket.addEventListener("message", (event) => {
      if (socket !== state.socket) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      heard();
      onFrame(socket, frame);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== state.socket) return;
      dropped();
      if (event.code === 4400 && event.reason === "bad_session") {
        session = randomId(32);
        store.set(SESSION_KEY, session);
      }
      reconnectLater();
    });
  }

  function dropped() {
    const socket = state.socket;
    state.socket = null;
    state.welcomed = false;
    clearTimeout(state.pingTimer);
    clearTimeout(state.pongTimer);
    setTyping(false);
    setConnection("offline");
    for (const pending of state.pending.values()) {
      if (pending.status === "sending") setStatus(pending, "waiting");
    }
    if (socket && socket.readyState <= WebSocket.OPEN) {
      try { socket.close(); } catch (e) { /* already closing */ }
    }
  }

  function reconnectLater() {
    clearTimeout(state.reconnectTimer);
    if (navigator.onLine === false) return; // the "online" event reconnects
    const delay = Math.min(30000, 500 * 2 ** state.attempts) * (0.7 + Math.random() * 0.6);
    state.attempts += 1;
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function heard() {
    // Any frame proves the connection alive; ping after a quiet spell.
    clearTimeout(state.pongTimer);
    clearTimeout(state.pingTimer);
    state.pingTimer = setTimeout(probe, PING_EVERY);
  }

  function probe() {
    // A socket can look open long after the network under it went (a phone that slept): give up on it when the
    // pong does not come, and connect again.
    const socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    clearTimeout(state.pongTimer);
    socket.send(JSON.stringify({ type: "ping" }));
    state.pongTimer = setTimeout(() => { if (state.socket === socket) { dropped(); reconnectLater(); } }, PONG_WITHIN);
  }

  function onFrame(socket, frame) {
    switch (frame.type) {
      case "welcome":
        state.welcomed = true;
        state.attempts = 0;
        state.replaying = true;
        log.setAttribute("aria-busy", "true");
        if (frame.session && frame.session !== session) {
          session = frame.session;
          store.set(SESSION_KEY, session);
        }
        if (frame.max_chars) state.maxChars = frame.max_chars;
        setConnection("online");
        for (const pending of Array.from(state.pending.values())) {
          if (pending.status === "waiting" || pending.status === "sending") transmit(pending);
        }
        break;
      case "message":
        if (frame.message) showMessage(frame.message);
        break;
      case "state":
        showHandoff(frame.handoff || null);
        if (state.replaying) {
          state.replaying = false;
          log.setAttribute("aria-busy", "false");
          scrollDown(true);
        }
        break;
      case "ack":
        acknowledged(frame.id, frame.message_id);
        break;
      case "typing":
        setTyping(Boolean(frame.on));
        break;
      case "cancelled":
        announce(frame.ok ? "已为您取消排队" : "当前没有在排队");
        break;
      case "error":
        if (frame.id) failed(frame.id, frame.code, frame.message, frame.retry_after);
        else showHint(frame.message || "出错了，请稍后再试", true);
        break;
      default:
        break; // pong, or something newer than this page
    }
  }

  // ------------------------------------------------------------------ the page

  function cancelQueue() {
    const socket = state.socket;
    if (socket && state.welcomed && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "cancel" }));
      return;
    }
    fetch("/chat/api/cancel", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ session }),
    }).then((r) => r.json()).then((r) => announce(r.cancelled ? "已为您取消排队" : "当前没有在排队"))
      .catch(() => showHint("网络不通，暂时无法取消，请稍后再试", true));
  }

  function grow() {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, 140)}px`;
    const left = state.maxChars - input.value.length;
    if (left < 200) showHint(`还可以输入${left}字`, left <= 0);
    else if (!hint.classList.contains("error")) showHint("");
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    grow();
    send(text);
    input.focus();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an IME candidate (拼音) is left alone.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  input.addEventListener("input", grow);
  for (const chip of document.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => send(chip.dataset.text));
  }
  $("cancel-queue").addEventListener("click", cancelQueue);

  if (EMBEDDED) {
    document.body.classList.add("embed");
    const close = $("close-widget");
    close.hidden = false;
    const leave = () => window.parent.postMessage({ type: "taxchat:close" }, "*");
    close.addEventListener("click", leave);
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") leave(); });
    window.addEventListener("message", (event) => {
      if (event.source === window.parent && event.data && event.data.type === "taxchat:focus") input.focus();
    });
  }

  window.addEventListener("online", () => { state.attempts = 0; connect(); });
  window.addEventListener("offline", () => { if (state.socket) dropped(); });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    if (state.socket) probe();
    else { state.attempts = 0; connect(); }
  });

  loadOutbox();
  connect();
})();
