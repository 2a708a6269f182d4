// Reference peer: the canonical Node.js echo server, `socket.pipe(socket)`.
// Usage: node bench/node_echo.mjs [PORT]   (prints "Listening on HOST:PORT")
import net from "node:net";

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on("error", () => {}); // a reset client must not end the server
  socket.pipe(socket);
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`Listening on 127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
