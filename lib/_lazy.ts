// Private: imports an npm package only when a feature that needs it runs.
//
// Deno downloads every package its module graph names before a program
// starts, and a literal `import("npm:…")` is in the graph. A plain echo
// server or client needs LogTape alone, so the module of each optional
// feature (node-redis for --redis, prom-client for --metrics, Vega for
// --plot, HdrHistogram for load tests) imports its package through this
// function, whose specifier Deno cannot see ahead of time: it is resolved,
// downloaded and checked against deno.lock when the import runs. Callers
// name the type with `import type`, which is not followed at run time, and
// the CLIs import those modules with `await import("./…")` where the feature
// is used. An npm import needs no permission; `deno publish` warns that it
// cannot analyze this import, by design. Not exported from mod.ts.

/** Imports the package `specifier` (a full `npm:` specifier) when called. */
export function importLazily<T>(specifier: `npm:${string}`): Promise<T> {
  const name: string = specifier;
  return import(name);
}
