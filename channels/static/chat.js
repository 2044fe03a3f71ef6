/* kefu web chat: posts to the web chat API, renders its replies and what agents say live.
 * Bot text is always set with textContent, never parsed as HTML. */
(function () {
  "use strict";

  var root = document.querySelector(".chat");
  var endpoint = root.getAttribute("data-endpoint");
  var base = endpoint.replace(/webhook$/, "");
  var log = document.getElementById("log");
  var typing = document.getElementById("typing");
  var form = document.getElementById("composer");
  var input = document.getElementById("input");
  var picker = document.getElementById("file");
  var attach = document.getElementById("attach");
  var TIMEOUT_MS = 30000;
  var composing = false;
  var pending = 0;
  var queue = Promise.resolve();
  var shown = {};
  var sender = senderId();

  function randomHex(bytes) {
    var values = new Uint8Array(bytes);
    window.crypto.getRandomValues(values);
    return Array.prototype.map.call(values, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
  }

  /* The sender id (128 random bits) survives reloads, so the conversation does too. It is
   * the conversation's only key: it travels in request bodies and the Authorization header,
   * never in a URL. */
  function senderId() {
    var key = "kefu.webchat.sender";
    var id = null;
    try { id = window.localStorage.getItem(key); } catch (e) { /* storage disabled */ }
    if (!id || !/^web-[0-9a-f]{32}$/.test(id)) {
      id = "web-" + randomHex(16);
      try { window.localStorage.setItem(key, id); } catch (e) { /* storage disabled */ }
    }
    return id;
  }

  function authorised(extra) {
    var headers = { "Authorization": "Bearer " + sender };
    Object.keys(extra || {}).forEach(function (key) { headers[key] = extra[key]; });
    return headers;
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

  /* A file is fetched with the token (never by a bare URL) and shown from memory. */
  function renderFile(item, file) {
    if (!file || typeof file.id !== "string") { return; }
    var name = String(file.name || "file");
    var link = document.createElement("a");
    link.className = "file";
    link.textContent = "📎 " + name;
    link.download = name;
    item.appendChild(link);
    fetch(base + "files/" + encodeURIComponent(file.id), { headers: authorised() })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.blob();
      }).then(function (blob) {
        var url = URL.createObjectURL(blob);
        link.href = url;
        if (file.kind === "image" && /^image\//.test(blob.type)) {
          var image = document.createElement("img");
          image.src = url;
          image.alt = name;
          image.addEventListener("load", scrollDown);
          item.insertBefore(image, link);
        }
      }).catch(function () { link.textContent = "📎 " + name + " ✕"; });
  }

  function renderReply(reply) {
    if (!reply || typeof reply !== "object") { return; }
    if (reply.id) {
      if (shown[reply.id]) { return; }
      shown[reply.id] = true;
    }
    if (reply.from === "user") {
      addBubble(addItem("user"), String(reply.text || ""));
      return;
    }
    var item = addItem(reply.from === "agent" ? "agent" : "bot");
    if (reply.from === "agent" && reply.agent) {
      var who = document.createElement("div");
      who.className = "who";
      who.textContent = String(reply.agent);
      item.appendChild(who);
    }
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
    if (Array.isArray(reply.files)) {
      reply.files.forEach(function (file) { renderFile(item, file); });
    }
    if (!item.childNodes.length) { log.removeChild(item); }
    scrollDown();
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

  /* A picture or PDF goes as the request body, its name in a header. */
  function sendFile(file) {
    addBubble(addItem("user"), "📎 " + file.name);
    scrollDown();
    queue = queue.then(function () {
      showTyping(1);
      return fetch(base + "files", {
        method: "POST",
        headers: authorised({
          "Content-Type": file.type || "application/octet-stream",
          "X-Filename": encodeURIComponent(file.name)
        }),
        body: file
      }).then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      }).then(function (replies) {
        (Array.isArray(replies) ? replies : []).forEach(renderReply);
      }, function () {
        notice("Sorry, the file could not be sent (pictures and PDFs up to 2 MB). " +
          "抱歉，文件发送失败（仅支持 2 MB 以内的图片和 PDF）。");
      }).finally(function () {
        showTyping(-1);
      });
    });
  }

  attach.addEventListener("click", function () { picker.click(); });
  picker.addEventListener("change", function () {
    if (picker.files && picker.files[0]) { sendFile(picker.files[0]); }
    picker.value = "";
  });

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

  /* The shop greets in the browser's language while the conversation is still empty. */
  function greet() {
    if (log.querySelector(".msg")) { return; }
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

  /* What the store kept (a reload shows the conversation again), then the live stream of
   * what agents say, read with fetch so that the token stays in a header. */
  function history() {
    return fetch(base + "history", { headers: authorised() }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (items) {
      log.textContent = "";
      shown = {};
      (Array.isArray(items) ? items : []).forEach(renderReply);
    });
  }

  function handleEvent(block) {
    var data = block.split("\n").filter(function (line) {
      return line.indexOf("data:") === 0;
    }).map(function (line) { return line.slice(5).trim(); }).join("\n");
    if (!data) { return; }
    try { renderReply(JSON.parse(data)); } catch (e) { /* a malformed event is skipped */ }
  }

  function listen() {
    fetch(base + "events", { headers: authorised({ "Accept": "text/event-stream" }) })
      .then(function (response) {
        if (!response.ok || !response.body) { throw new Error("HTTP " + response.status); }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function read() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { throw new Error("stream closed"); }
            buffer += decoder.decode(chunk.value, { stream: true });
            var blocks = buffer.split("\n\n");
            buffer = blocks.pop();
            blocks.forEach(handleEvent);
            return read();
          });
        }
        return history().then(greet).then(read);
      })
      .catch(function () {
        window.setTimeout(listen, 3000);
      });
  }

  listen();
})();
