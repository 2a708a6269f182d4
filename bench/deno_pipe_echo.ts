// Reference peer: the echo server from Deno's documentation,
// `conn.readable.pipeTo(conn.writable)`.
// Usage: deno run --allow-net bench/deno_pipe_echo.ts [PORT]

const listener = Deno.listen({
  hostname: "127.0.0.1",
  port: Number(Deno.args[0] ?? 0),
});
console.log(`Listening on 127.0.0.1:${listener.addr.port}`);
for await (const conn of listener) {
  conn.setNoDelay(true);
  // An unhandled pipeTo rejection would end the process.
  conn.readable.pipeTo(conn.writable).catch(() => {});
}
