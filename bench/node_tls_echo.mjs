// Reference peer: Node's TLS echo server, `socket.pipe(socket)` over
// `tls.createServer`.
// Usage: node bench/node_tls_echo.mjs PORT CERT_FILE KEY_FILE
//   (prints "Listening on HOST:PORT")
import fs from "node:fs";
import tls from "node:tls";

const [port, certFile, keyFile] = process.argv.slice(2);
const server = tls.createServer({
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
}, (socket) => {
  socket.setNoDelay(true);
  socket.on("error", () => {}); // a reset client must not end the server
  socket.pipe(socket);
});
server.on("tlsClientError", () => {});
server.listen(Number(port ?? 0), "127.0.0.1", () => {
  console.log(`Listening on 127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
