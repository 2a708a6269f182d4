// Private: server.ts's HTTP endpoints, --metrics and --control, checked
// before the server starts (a bad address or token file is a usage error
// alone) and served once it is ready: one listener each, or one for both
// when they name the same address. prom-client is loaded only for
// --metrics. Not exported from mod.ts.

import { formatAddr, type OptionError } from "../_helpers.ts";
import { controlRoute, type Route } from "../control/api.ts";
import type { EchoServer } from "../types.ts";
import { UsageError } from "./flags.ts";

/** Where an endpoint listens. */
type Where = { hostname: string; port: number };

/** The endpoints asked for, and how the flags were spelled. */
export interface HttpFlags {
  metrics?: Where;
  control?: Where;
  /** The control API's bearer token, read from its file. */
  controlToken?: string;
  spelled: { metrics: string; control: string };
}

/** The endpoints of a ready server, with a line for each to print. */
export interface Endpoints {
  servers: Deno.HttpServer<Deno.NetAddr>[];
  lines: string[];
}

/**
 * Starts the endpoints of a ready server; throws an `Error` worded for the
 * user (the port in use, or not allowed).
 */
export type StartHttp = (server: EchoServer<Deno.Addr>) => Endpoints;

/**
 * Checks --metrics and --control and returns what starts them, or
 * `undefined` without either.
 *
 * @throws {UsageError} An address is out of range, or the token is not one.
 */
export async function httpFlags(
  flags: HttpFlags,
): Promise<StartHttp | undefined> {
  const { metrics, control, controlToken, spelled } = flags;
  if (metrics === undefined && control === undefined) return undefined;
  const served = metrics && await import("../serve_metrics.ts");
  const controlled = control && await import("../serve_control.ts");
  try {
    served?.assertMetricsOptions(metrics!);
  } catch (error) {
    throw new UsageError(
      `Invalid ${spelled.metrics}: ${(error as OptionError).reason}`,
    );
  }
  try {
    controlled?.assertControlOptions({ ...control, token: controlToken });
  } catch (error) {
    const { option, reason } = error as OptionError;
    const flag = option === "token" ? "--control-token-file" : spelled.control;
    throw new UsageError(`Invalid ${flag}: ${reason}`);
  }
  const shared = metrics !== undefined && control !== undefined &&
    metrics.hostname === control.hostname && metrics.port === control.port;
  return (server) => {
    const wanted: { what: string; where: Where; route: Route; path: string }[] =
      [];
    if (served !== undefined) {
      const route = served.metricsRoute(server);
      wanted.push({ what: "metrics", where: metrics!, route, path: "metrics" });
    }
    if (control !== undefined) {
      const route = controlRoute(server, controlToken);
      wanted.push({
        what: "the control API",
        where: control,
        route,
        path: "faults",
      });
    }
    const groups = shared ? [wanted] : wanted.map((w) => [w]);
    const endpoints: Endpoints = { servers: [], lines: [] };
    for (const group of groups) {
      const { hostname, port } = group[0].where;
      let http;
      try {
        http = Deno.serve(
          { hostname, port, onListen: () => {} },
          (request, info) => {
            for (const { route } of group) {
              const answered = route(request, info);
              if (answered !== undefined) return answered;
            }
            const paths = group.map((g) => `/${g.path}`).join(" or ");
            return new Response(`Not found: try ${paths}\n`, { status: 404 });
          },
        );
      } catch (error) {
        for (const started of endpoints.servers) started.shutdown();
        throw new Error(
          `Cannot serve ${group.map((g) => g.what).join(" and ")} on ${
            formatAddr(group[0].where)
          }: ${(error as Error).message}`,
        );
      }
      endpoints.servers.push(http);
      for (const { what, path } of group) {
        const name = what === "metrics" ? "Metrics" : "Control API";
        endpoints.lines.push(
          `${name} on http://${formatAddr(http.addr)}/${path}`,
        );
      }
    }
    return endpoints;
  };
}
