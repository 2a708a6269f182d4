// The client's latency pictures: --histogram (HdrHistogram's percentile
// distribution) and --plot (an SVG chart, runs added by --label), rendered
// by a real renderer (rsvg-convert, Debian's librsvg2-bin) and checked not
// to be blank.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { runsIn } from "../lib/cli/plot.ts";
import { assertUsageErrors, CLIENT, LOCK, run } from "./_process.ts";
import { readPng } from "./_png.ts";

const CLI = [
  Deno.execPath(),
  ...["run", LOCK, "--allow-net", "--allow-read", "--allow-write", CLIENT],
];

function client(args: string[]) {
  return run(CLI[0], [...CLI.slice(1), ...args]);
}

Deno.test("client --histogram and --plot write a percentile distribution and a chart that renders, runs added by --label", async () => {
  await using server = serveEcho({ port: 0 });
  const dir = await Deno.makeTempDir();
  try {
    const histogram = `${dir}/missing/run.hgrm`;
    const plot = `${dir}/latency.svg`;
    const load = ["--port", String(server.addr.port), "--connections", "4"];
    const first = await client([
      ...load,
      ...["--count", "2000", "--json", "--histogram", histogram],
      ...["--plot", plot, "--label", "first"],
    ]).catch((e) => e);
    // A path through a directory that does not exist: a usage error, one
    // line, before the load test runs (nothing reached the server).
    assert.equal(first.code, 2, first.stderr);
    assert.equal(
      first.stderr,
      `error: Invalid --histogram: cannot write it (no folder ${dir}/missing), got '${histogram}' (see --help)\n`,
    );
    assert.equal(server.stats.accepted, 0);

    const ok = await client([
      ...load,
      ...["--count", "2000", "--json", "--histogram", `${dir}/run.hgrm`],
      ...["--plot", plot, "--label", "first"],
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const report = JSON.parse(new TextDecoder().decode(ok.stdout));
    // HdrHistogram's text: a header, value (ms) / percentile / count /
    // 1/(1-p) lines, and the summary at the end, counting every round trip.
    const text = await Deno.readTextFile(`${dir}/run.hgrm`);
    const lines = text.trimEnd().split("\n");
    assert.match(
      lines[0],
      /^\s+Value\s+Percentile\s+TotalCount\s+1\/\(1-Percentile\)$/,
    );
    assert.match(lines.at(-2)!, new RegExp(`Total count\\s+=\\s+2000\\]$`));
    const rows = lines.filter((l) => /^\s+[\d.]+\s+[\d.]+\s+\d+/.test(l));
    assert.ok(rows.length > 20, text);
    const max = Number(/Max\s+=\s+([\d.]+)/.exec(text)![1]);
    assert.ok(
      Math.abs(max * 1000 - report.latencyUs.max) <=
        report.latencyUs.max / 500 + 1,
    );

    // A second run with another label joins the chart; the same label again
    // replaces its run.
    for (const label of ["second", "first"]) {
      const more = await client([
        ...load,
        ...["--count", "500", "--plot", plot, "--label", label],
      ]);
      assert.equal(more.code, 0, more.stderr);
    }
    const svg = await Deno.readTextFile(plot);
    assert.deepEqual(runsIn(svg).map((r) => r.label), ["second", "first"]);
    for (const word of ["Latency by percentile", "latency (ms)", "99.9 %"]) {
      assert.ok(svg.includes(word), word);
    }

    // Rendered by librsvg: a picture, not a blank page.
    const png = `${dir}/latency.png`;
    const rendered = await run("rsvg-convert", [plot, "-o", png]);
    assert.equal(rendered.code, 0, rendered.stderr);
    const { width, height, rgba } = await readPng(await Deno.readFile(png));
    assert.ok(width >= 640 && height >= 360, `${width}×${height}`);
    let ink = 0;
    const colours = new Set<number>();
    for (let i = 0; i < width * height; i++) {
      const [r, g, b] = rgba.subarray(i * 4, i * 4 + 3);
      if (r < 240 || g < 240 || b < 240) ink++;
      colours.add(r << 16 | g << 8 | b);
    }
    // Lines, axes and text: some ink, two run colours and more, not a fill.
    assert.ok(ink / (width * height) > 0.01, `ink ${ink}`);
    assert.ok(ink / (width * height) < 0.5, `ink ${ink}`);
    assert.ok(colours.size > 10, `${colours.size} colours`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client --histogram, --plot and --label: usage errors", async () => {
  await assertUsageErrors(CLI, [
    [
      ["--plot", "x.svg", "hi"],
      "Unexpected --plot without a load test flag (--connections, --count, --duration, ...)",
    ],
    [
      ["--histogram", "x.hgrm", "hi"],
      "Unexpected --histogram without a load test flag (--connections, --count, --duration, ...)",
    ],
    [["--count", "5", "--label", "a"], "Give --plot with --label"],
  ]);
});
