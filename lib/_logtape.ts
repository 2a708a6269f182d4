// Private: LogTape, the one logging library, from one specifier for every
// module. It is not in deno.json's imports: `deno task` downloads every
// package the imports name before it runs a task, and prints each download,
// so a first `deno task server` printed LogTape's download before its own
// output. The tasks run `deno run --quiet`, which fetches it on first use
// without a word. Not exported from mod.ts.

export * from "npm:@logtape/logtape@^2.4.2";
