// The page of a tcp-echo server's --websocket listener: it connects to /ws
// on the server that served it, shows what arrives and what is sent, sends
// a line (as text, or its UTF-8 bytes as binary), and in chat mode sets the
// name and room. When the connection drops (a server restart, say) it
// reconnects after 0.5 s, 1 s, 2 s… up to 10 s, with jitter. Nothing that
// arrives is ever inserted as HTML: every line is text.

const MAX_ENTRIES = 500;
const RETRY_FIRST_MS = 500;
const RETRY_MOST_MS = 10_000;

const ABOUT = {
  echo: "Echo mode: each message comes back as it was sent, text as text, " +
    "binary as binary.",
  line: "Line mode: each message is a line, echoed back as a line.",
  info: "Info mode: each message is a command (hostname, clientip, time, " +
    "help…), answered in one line.",
  broadcast: "Broadcast mode: each message goes to every client, browsers " +
    "and TCP clients alike.",
  chat: "Chat mode: each message goes to your room, browsers and TCP " +
    "clients alike; /who lists it.",
};

const $ = (id) => document.getElementById(id);
const log = $("log");
const state = $("state");
const line = $("line");
const binary = $("binary");

const url = new URL("/ws", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";

let socket;
let retries = 0;

/** Adds an entry to the log, as text; keeps the last MAX_ENTRIES. */
function show(kind, text) {
  const entry = document.createElement("li");
  entry.className = kind;
  entry.textContent = text;
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(entry);
  while (log.childElementCount > MAX_ENTRIES) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function setState(name, text) {
  state.dataset.state = name;
  state.textContent = text;
}

/** Binary as its length and first bytes in hex. */
function describeBytes(buffer) {
  const bytes = new Uint8Array(buffer);
  const shown = [...bytes.subarray(0, 32)]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join(" ");
  const more = bytes.length > 32 ? " …" : "";
  return `binary, ${bytes.length} bytes: ${shown}${more}`;
}

function connect() {
  setState("connecting", `Connecting to ${url}…`);
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    retries = 0;
    setState("open", `Connected to ${url}`);
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") show("in", event.data);
    else show("in binary", describeBytes(event.data));
  };
  socket.onclose = (event) => {
    const delay = Math.min(RETRY_MOST_MS, RETRY_FIRST_MS * 2 ** retries) *
      (0.75 + Math.random() / 4);
    retries++;
    const why = event.reason ? `: ${event.reason}` : "";
    setState(
      "closed",
      `Disconnected (${event.code}${why}); again in ${
        (delay / 1000).toFixed(1)
      } s`,
    );
    setTimeout(connect, delay);
  };
}

function send(text) {
  if (socket?.readyState !== WebSocket.OPEN) {
    show("note", "Not connected: not sent");
    return false;
  }
  socket.send(binary.checked ? new TextEncoder().encode(text) : text);
  show("out", binary.checked ? `${text} (as binary)` : text);
  return true;
}

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  if (line.value !== "" && send(line.value)) line.value = "";
  line.focus();
});
$("nick").addEventListener("submit", (event) => {
  event.preventDefault();
  send(`/nick ${$("name").value}`);
});
$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  send(`/join ${$("room").value}`);
});

// The mode says what the page shows: the name and room only in chat.
fetch("/info")
  .then((response) => response.json())
  .then(({ mode }) => {
    $("mode").textContent = `${mode} mode`;
    $("about").textContent = ABOUT[mode] ?? "";
    $("chat").hidden = mode !== "chat";
  })
  .catch(() => {});

connect();
