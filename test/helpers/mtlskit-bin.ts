/** Runs the CLI from sources in a child process (the kill and concurrency tests need real processes). */
import { main } from "../../src/cli/main.ts";

await main();
