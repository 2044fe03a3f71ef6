/* kefu web chat: posts to the REST channel and renders its replies.
 * Bot text is always set with textContent, never parsed as HTML. */
(function () {
  "use strict";

  var root = document.querySelector(".chat");
  var endpoint = root.getAttribute("data-endpoint");
  var log = document.getElementById("log");
  var typing = document.getElementById("typing");
  var form = document.getElementById("composer");
  var input = document.getElementById("input");
  var TIMEOUT_MS = 30000;
  var composing = false;
  var pending = 0;
  var queue = Promise.resolve();
  var sender = senderId();

  function randomHex(bytes) {
    var values = new Uint8Array(bytes);
    window.crypto.getRandomValues(values);
    return Array.prototype.map.call(values, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
  }

  /* The sender id survives reloads so the conversation does too. */
  function senderId() {
    var key = "kefu.webchat.sender";
    var id = null;
    try { id = window.localStorage.getItem(key); } catch (e) { /* storage disabled */ }
    if (!id) {
      id = "web-" + randomHex(16);
      try { window.localStorage.setItem(key, id); } catch (e) { /* storage disabled */ }
    }
    return id;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function addItem(kind) {
    var item = document.createElement("li");
    item.className = "msg " + kind;
    log.appendChild(item);
    return item;
  }

  function addBubble(item, text) {
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    item.appendChild(bubble);
    return bubble;
  }

  /* Only http(s) and same-origin images: no javascript: or other schemes. */
  function safeImageUrl(value) {
    try {
      var url = new URL(String(value), window.location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function renderButtons(item, buttons) {
    var group = document.createElement("div");
    group.className = "buttons";
    buttons.forEach(function (button) {
      if (!button || typeof button.payload !== "string") { return; }
      var element = document.createElement("button");
      element.type = "button";
      element.textContent = String(button.title || button.payload);
      element.addEventListener("click", function () {
        Array.prototype.forEach.call(group.querySelectorAll("button"), function (b) {
          b.disabled = true;
        });
        send(button.payload, element.textContent);
      });
      group.appendChild(element);
    });
    item.appendChild(group);
  }

  function renderReply(reply) {
    if (!reply || typeof reply !== "object") { return; }
    var item = addItem("bot");
    if (typeof reply.text === "string" && reply.text !== "") {
      addBubble(item, reply.text);
    }
    var src = reply.image ? safeImageUrl(reply.image) : null;
    if (src) {
      var image = document.createElement("img");
      image.src = src;
      image.alt = "";
      image.loading = "lazy";
      image.addEventListener("load", scrollDown);
      item.appendChild(image);
    }
    if (Array.isArray(reply.buttons) && reply.buttons.length) {
      renderButtons(item, reply.buttons);
    }
    if (!item.childNodes.length) { log.removeChild(item); }
  }

  function showTyping(delta) {
    pending += delta;
    typing.hidden = pending === 0;
    scrollDown();
  }

  function notice(text, retry) {
    var item = addItem("notice");
    addBubble(item, text);
    if (retry) {
      var again = document.createElement("button");
      again.type = "button";
      again.textContent = "Try again · 重试";
      again.addEventListener("click", function () {
        log.removeChild(item);
        retry();
      });
      item.appendChild(again);
    }
    scrollDown();
  }

  function post(body) {
    var controller = new AbortController();
    var timer = window.setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    return fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).finally(function () {
      window.clearTimeout(timer);
    });
  }

  /* Messages go out one at a time so replies keep their order; a retry reuses the
   * message id, so the server never answers the same message twice. */
  function deliver(body) {
    queue = queue.then(function () {
      showTyping(1);
      return post(body).then(function (replies) {
        (Array.isArray(replies) ? replies : []).forEach(renderReply);
      }, function () {
        notice("Sorry, your message could not be sent. 抱歉，消息发送失败。", function () {
          deliver(body);
        });
      }).finally(function () {
        showTyping(-1);
      });
    });
  }

  function send(message, shown) {
    addBubble(addItem("user"), shown);
    scrollDown();
    deliver({ sender: sender, message: message, message_id: randomHex(12) });
  }

  function submit() {
    var text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    resize();
    send(text, text);
  }

  function resize() {
    input.style.height = "auto";
    input.style.height = input.scrollHeight + "px";
  }

  /* The shop greets in the browser's language before the customer writes. */
  function greet() {
    var language = (navigator.languages && navigator.languages[0]) || navigator.language || "";
    fetch(root.getAttribute("data-greeting") + "?lang=" + encodeURIComponent(language))
      .then(function (response) {
        return response.status === 200 ? response.json() : null;
      })
      .then(function (reply) {
        if (reply && !log.querySelector(".msg")) {
          renderReply(reply);
          scrollDown();
        }
      }, function () { /* no greeting: the chat works without one */ });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
    input.focus();
  });

  /* Enter sends and Shift+Enter breaks the line, but never while an IME (Chinese pinyin,
   * Japanese kana) is composing: there Enter confirms the candidate. keyCode 229 covers
   * browsers that fire the confirming keydown after compositionend. */
  input.addEventListener("compositionstart", function () { composing = true; });
  input.addEventListener("compositionend", function () { composing = false; });
  input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.shiftKey) { return; }
    if (composing || event.isComposing || event.keyCode === 229) { return; }
    event.preventDefault();
    submit();
  });
  input.addEventListener("input", resize);
  greet();
})();
