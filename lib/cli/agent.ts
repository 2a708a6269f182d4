// Private: `client.ts --agent`: a load agent until Ctrl+C (or SIGTERM),
// saying on stderr what it runs. Not exported from mod.ts.

import { runLoadAgent } from "../run_load_agent.ts";
import type { LoadAgentOptions } from "../run_load_agent.ts";
import { EXIT_FAILURE, EXIT_OK, printError } from "./flags.ts";
import { shownUrl } from "../relay/redis_bus.ts";

/** Runs an agent until a signal; the exit code. */
export async function runAgent(options: LoadAgentOptions): Promise<number> {
  let agent;
  try {
    agent = await runLoadAgent({
      ...options,
      onRun: (event) => {
        switch (event.kind) {
          case "start":
            return console.error(
              `Run ${event.run}: ${event.connections} connections${
                event.lateMs > 50 ? `, started ${event.lateMs} ms late` : ""
              }`,
            );
          case "end":
            return console.error(
              `Run ${event.run}: ${
                event.roundTrips.toLocaleString("en-US")
              } round trips, ${event.errors} errors; reported`,
            );
          case "refused":
            return console.error(`Run ${event.run} refused: ${event.reason}`);
        }
      },
    });
  } catch (error) {
    printError(`Cannot start the agent: ${(error as Error).message}`);
    return EXIT_FAILURE;
  }
  console.error(
    `Agent ${agent.name} waiting for plans on ${shownUrl(options.redis)} (key ${
      options.redisKey ?? "tcp-echo"
    }); Ctrl+C ends it`,
  );
  const stop = () => agent.close();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    await agent.finished;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    await agent.close();
  }
  console.error(`Agent ${agent.name} stopped`);
  return EXIT_OK;
}
