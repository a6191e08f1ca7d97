/* 12366 chat widget for any site: one tag, <script src="https://<service>/widget.js" async></script>.
 *
 * Adds a launcher button (bottom right) that opens the chat page of the same service in a frame: a panel on wide
 * screens, the whole screen on phones. Everything lives in a shadow root, so the site's styles and the widget's
 * do not touch. Optional attributes on the tag: data-title (the launcher's text), data-open="true".
 */
(() => {
  "use strict";
  if (window.__taxchatWidget) return;
  window.__taxchatWidget = true;

  const script = document.currentScript;
  const origin = new URL(script && script.src ? script.src : "/", location.href).origin;
  const title = (script && script.dataset.title) || "在线咨询";

  const CSS = `
    :host { all: initial; }
    * { box-sizing: border-box; }
    .launcher {
      position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; display: flex; align-items: center; gap: 8px;
      height: 52px; padding: 0 20px 0 16px; border: 0; border-radius: 26px; background: #0b5cad; color: #fff;
      font: 600 15px/1 "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", system-ui, sans-serif;
      box-shadow: 0 6px 20px rgba(11, 92, 173, .35); cursor: pointer;
    }
    .launcher:hover { background: #084a8c; }
    .launcher:focus-visible, .panel:focus-visible { outline: 3px solid #6aa7e8; outline-offset: 2px; }
    .launcher svg { width: 22px; height: 22px; fill: currentColor; }
    .badge {
      position: absolute; top: 6px; right: 10px; width: 10px; height: 10px; border-radius: 50%; background: #ff5a4f;
      box-shadow: 0 0 0 2px #0b5cad;
    }
    .panel {
      position: fixed; right: 20px; bottom: 84px; z-index: 2147483001; width: 380px; height: min(640px, calc(100vh - 110px));
      border-radius: 14px; overflow: hidden; background: #fff; box-shadow: 0 12px 40px rgba(15, 23, 42, .28);
    }
    .panel iframe { display: block; width: 100%; height: 100%; border: 0; }
    [hidden] { display: none !important; }
    @media (max-width: 520px) {
      .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; }
      :host([data-open]) .launcher { display: none; }
    }
  `;

  const host = document.createElement("div");
  host.id = "taxchat-widget";
  const root = host.attachShadow({ mode: "open" });
  const style = document.createElement("style");
  style.textContent = CSS;

  const launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  launcher.dataset.testid = "taxchat-launcher";
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "taxchat-panel");
  launcher.setAttribute("aria-label", `打开${title}（12366 智能税务助手）`);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6v2h2V9H7zm4 0v2h2V9h-2zm4 0v2h2V9h-2z");
  svg.append(path);
  const label = document.createElement("span");
  label.textContent = title;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.hidden = true;
  launcher.append(svg, label, badge);

  const panel = document.createElement("div");
  panel.id = "taxchat-panel";
  panel.className = "panel";
  panel.dataset.testid = "taxchat-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", "12366 在线咨询");
  panel.tabIndex = -1;
  panel.hidden = true;

  root.append(style, launcher, panel);

  let frame = null;
  let loaded = false;

  function open() {
    if (!frame) { // loaded on first use: a page view costs the site nothing
      frame = document.createElement("iframe");
      frame.src = `${origin}/?embed=1`;
      frame.title = "12366 智能税务助手";
      frame.dataset.testid = "taxchat-frame";
      frame.setAttribute("allow", "clipboard-write");
      frame.addEventListener("load", () => { loaded = true; focusChat(); });
      panel.append(frame);
    }
    panel.hidden = false;
    host.setAttribute("data-open", "");
    launcher.setAttribute("aria-expanded", "true");
    setUnread(false);
    focusChat();
  }

  function close() {
    panel.hidden = true;
    host.removeAttribute("data-open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  function focusChat() {
    if (!frame || panel.hidden) return;
    frame.focus();
    if (loaded && frame.contentWindow) frame.contentWindow.postMessage({ type: "taxchat:focus" }, origin);
  }

  function setUnread(on) {
    badge.hidden = !on;
    launcher.setAttribute("aria-label", `打开${title}（12366 智能税务助手）${on ? "，有新消息" : ""}`);
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) close();
  });
  window.addEventListener("message", (event) => {
    if (event.origin !== origin || !frame || event.source !== frame.contentWindow) return;
    const type = event.data && event.data.type;
    if (type === "taxchat:close") close();
    else if (type === "taxchat:unread" && panel.hidden) setUnread(true);
  });

  function mount() {
    document.body.append(host);
    if (script && script.dataset.open === "true") open();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
