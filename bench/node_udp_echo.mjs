// Reference peer: Node's UDP echo, every datagram sent back to its sender.
// Usage: node bench/node_udp_echo.mjs [PORT]   (prints "Listening on HOST:PORT")
import dgram from "node:dgram";

const socket = dgram.createSocket("udp4");
socket.on("message", (message, peer) => {
  socket.send(message, peer.port, peer.address);
});
socket.on("error", () => {}); // an ICMP error must not end the server
socket.bind(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`Listening on 127.0.0.1:${socket.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
