/** Worker thread entry: runs ServiceJobs sent by apply and reports progress after each. */
import { parentPort, workerData } from "node:worker_threads";
import { runJob, toIssuer, type IssuerData, type ServiceJob } from "./jobs.ts";

const { dir, issuer, jobs } = workerData as { dir: string; issuer: IssuerData; jobs: ServiceJob[] };
const signer = toIssuer(issuer);
for (const job of jobs) {
  runJob(dir, job, signer);
  parentPort!.postMessage({ done: job.certs.length });
}
