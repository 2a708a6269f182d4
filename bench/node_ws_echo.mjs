// Reference peer: a WebSocket echo server on Node with the ws package, as
// Node users write one (no compression, each message back as it came).
// Usage: node bench/node_ws_echo.mjs PORT WS_PACKAGE_DIR
//   (prints "Listening on ws://127.0.0.1:PORT/ws")
const { WebSocketServer } = await import(`${process.argv[3]}/wrapper.mjs`);

const server = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(process.argv[2] ?? 0),
  perMessageDeflate: false,
});
server.on("connection", (socket) => {
  socket.on("error", () => {}); // a client gone must not end the server
  socket.on(
    "message",
    (data, isBinary) => socket.send(data, { binary: isBinary }),
  );
});
server.on("listening", () => {
  console.log(`Listening on ws://127.0.0.1:${server.address().port}/ws`);
});
process.on("SIGTERM", () => process.exit(0));
