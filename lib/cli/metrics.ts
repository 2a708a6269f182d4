// Private: server.ts's --metrics, checked before the server starts (a bad
// address is a usage error alone) and served once it is ready. prom-client
// is loaded only for --metrics, not at every start. Not exported from mod.ts.

import { formatAddr, type OptionError } from "../_helpers.ts";
import type { EchoServer } from "../types.ts";
import { UsageError } from "./flags.ts";

/**
 * Starts the metrics endpoint of a ready server; throws an `Error` worded
 * for the user (the port in use, or not allowed).
 */
export type StartMetrics = (
  server: EchoServer<Deno.Addr>,
) => Deno.HttpServer<Deno.NetAddr>;

/**
 * Checks --metrics (`where`, as `flag` was spelled) and returns what starts
 * it, or `undefined` without it.
 *
 * @throws {UsageError} The address is out of range.
 */
export async function metricsFlag(
  where: { hostname: string; port: number } | undefined,
  flag = "--metrics",
): Promise<StartMetrics | undefined> {
  if (where === undefined) return undefined;
  const { assertMetricsOptions, serveMetrics } = await import(
    "../serve_metrics.ts"
  );
  try {
    assertMetricsOptions(where);
  } catch (error) {
    throw new UsageError(`Invalid ${flag}: ${(error as OptionError).reason}`);
  }
  return (server) => {
    try {
      return serveMetrics(server, where);
    } catch (error) {
      throw new Error(
        `Cannot serve metrics on ${formatAddr(where)}: ${
          (error as Error).message
        }`,
      );
    }
  };
}
