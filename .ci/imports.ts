// CI check of how our modules import each other, from `deno info --json`:
//
// - no import circles among our files (type-only imports count too);
// - no private file of lib/ (`lib/_*.ts`, or anything in a folder under lib/)
//   imports a public function's file (`lib/*.ts`): dependencies go one way,
//   from the CLIs to the public functions to their private parts. A public
//   file that imports nothing of ours (the public types, `lib/types.ts`) is
//   at the bottom, and anyone may import it;
// - nothing in lib/ outside lib/cli/ imports lib/cli/: the library does not
//   depend on its command lines' helpers.
//
// Usage: deno run --allow-read --allow-run .ci/imports.ts ENTRY...
// Prints each problem on a line of its own and exits 1 if there is any.

const root = new URL("..", import.meta.url);
const entries = Deno.args.length > 0 ? Deno.args : ["mod.ts"];

interface Dependency {
  code?: { specifier?: string };
  type?: { specifier?: string };
}
interface Module {
  specifier: string;
  dependencies?: Dependency[];
}

/** Our files and what each imports of ours, from every entry. */
const graph = new Map<string, Set<string>>();
for (const entry of entries) {
  const { stdout, success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root,
  }).output();
  if (!success) {
    console.error(new TextDecoder().decode(stderr));
    Deno.exit(1);
  }
  const info = JSON.parse(new TextDecoder().decode(stdout));
  for (const module of info.modules as Module[]) {
    const from = ours(module.specifier);
    if (from === undefined) continue;
    const targets = graph.get(from) ?? new Set<string>();
    graph.set(from, targets);
    for (const dependency of module.dependencies ?? []) {
      for (const target of [dependency.code, dependency.type]) {
        const to = ours(target?.specifier);
        if (to !== undefined) targets.add(to);
      }
    }
  }
}

/** `specifier` as a path in this repository, if it is one of our files. */
function ours(specifier: string | undefined): string | undefined {
  if (specifier === undefined || !specifier.startsWith(root.href)) {
    return undefined;
  }
  return specifier.slice(root.href.length);
}

function isPublic(path: string): boolean {
  return /^lib\/[^_/][^/]*\.ts$/.test(path);
}

function isLibrary(path: string): boolean {
  return path.startsWith("lib/") && !path.startsWith("lib/cli/");
}

/** A private part of the library; lib/cli/ belongs to the CLIs, above it. */
function isPrivate(path: string): boolean {
  return isLibrary(path) && !isPublic(path);
}

const problems: string[] = [];
for (const [from, targets] of graph) {
  for (const to of targets) {
    const leaf = (graph.get(to)?.size ?? 0) === 0;
    if (isPrivate(from) && isPublic(to) && !leaf) {
      problems.push(`upward import: ${from} imports ${to}`);
    }
    if (isLibrary(from) && to.startsWith("lib/cli/")) {
      problems.push(`library imports a CLI helper: ${from} imports ${to}`);
    }
  }
}

// Circles: depth-first search, reporting each back edge's circle once.
const state = new Map<string, "open" | "done">();
const stack: string[] = [];
const seen = new Set<string>();
function visit(node: string): void {
  state.set(node, "open");
  stack.push(node);
  for (const next of [...graph.get(node) ?? []].sort()) {
    if (state.get(next) === "open") {
      const circle = [...stack.slice(stack.indexOf(next)), next];
      const key = [...circle.slice(1)].sort().join(" ");
      if (!seen.has(key)) {
        seen.add(key);
        problems.push(`import circle: ${circle.join(" -> ")}`);
      }
    } else if (state.get(next) === undefined) {
      visit(next);
    }
  }
  stack.pop();
  state.set(node, "done");
}
for (const node of [...graph.keys()].sort()) {
  if (state.get(node) === undefined) visit(node);
}

for (const problem of problems) console.log(problem);
console.log(
  `${graph.size} modules of ours, ${problems.length} import ${
    problems.length === 1 ? "problem" : "problems"
  }`,
);
if (problems.length > 0) Deno.exit(1);
