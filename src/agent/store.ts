/**
 * Where the agent keeps what it holds: the service layout fileSource reads (OUT/key.pem 0600,
 * OUT/cert.pem, OUT/ca.pem) and its state, OUT/agent.json (docs/online-ca.md, "Agent output"),
 * or memory alone (agentSource). Every file is written atomically through state/fs.ts, and a new
 * pair is renamed into place key first, then certificate: a reader may see the new key beside the
 * old certificate for a moment (fileSource takes a mismatch for a rotation in progress and keeps
 * the old pair), never a certificate without its key. A kill between the two renames would leave
 * a key beside a certificate that is not its own, the token spent and nothing to renew with; so
 * the new pair is first written whole to OUT/agent-pending.json (0600, atomically), and a restart
 * that finds it finishes the install before anything else.
 *
 * A request that may have reached a server keeps its key and CSR in OUT/agent-request.json (0600,
 * written atomically before the request is sent): a retry, even after a restart, sends the same
 * CSR, so a replica that recorded the certificate but could not answer can hand it back. It is
 * removed once a certificate for it is installed, or after a definitive refusal.
 */
import { rmSync } from "node:fs";
import * as path from "node:path";
import { FailedError } from "../errors.ts";
import type { KeyTypeName } from "../pki/keys.ts";
import { readTextBounded } from "../read-file.ts";
import { parseCredentials, readCredentials, type Credentials } from "../service/source.ts";
import { ensureDir, ioFailure, syncDir, writeFileAtomic, writeFilesAtomic } from "../state/fs.ts";
import { MODES } from "../state/layout.ts";
import type { ServerState } from "./servers.ts";

/** AGENT_FILES names the agent's output files in OUT, and their modes. */
export const AGENT_FILES = {
  key: { name: "key.pem", mode: MODES.key },
  cert: { name: "cert.pem", mode: MODES.public },
  ca: { name: "ca.pem", mode: MODES.public },
  state: { name: "agent.json", mode: MODES.public },
  /** pending: a new pair being installed (key, chain, bundle), removed once in place. */
  pending: { name: "agent-pending.json", mode: MODES.key },
  /** request: the key and CSR of a request that may have reached a server, sent again on a retry. */
  request: { name: "agent-request.json", mode: MODES.key },
} as const;

/** AgentStatus is the agent's health in one word: `--status` exits 0 for healthy only. */
export type AgentStatus = "enrolling" | "healthy" | "failing" | "expired";

/** AgentState is OUT/agent.json: what the agent holds, what went wrong last, and when it tries next. */
export interface AgentState {
  version: 1;
  service: string;
  /** server: the server asked first (the last one that worked; the first listed until one did). */
  server: string;
  /** servers: each listed server's state (last success, last error, failures in a row), in the list's order. */
  servers?: ServerState[];
  status: AgentStatus;
  /** serial, notBefore, notAfter: the certificate held (absent before the first enrollment). */
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  /** renewAfter: when the agent renews (2/3 of the lifetime, less jitter). */
  renewAfter?: string;
  /** bundleSha256: the SHA-256 of each certificate of ca.pem. */
  bundleSha256?: string[];
  /** lastSuccess: the last exchange with the server that worked. */
  lastSuccess?: string;
  /** lastError: the last failure, until a success clears it. */
  lastError?: { code: string; message: string; at: string };
  /** failures: consecutive failures (the backoff's exponent). */
  failures: number;
  /** nextAttempt: when the agent next talks to the server. */
  nextAttempt?: string;
  /** enrolledWith: the id of the bootstrap token this agent spent; never the token itself. */
  enrolledWith?: string;
  /** reload: the last run of the reload hook. */
  reload?: { at: string; ok: boolean; message: string };
  updatedAt: string;
}

/**
 * PendingRequest is a request's key and CSR, kept until a certificate for them is installed:
 * `kind` and `bound` (`token:ID` for an enrollment, `serial:HEX` for the renewal of that
 * certificate) say which attempt it belongs to; another attempt makes a new key.
 */
export interface PendingRequest {
  version: 1;
  kind: "enroll" | "renew";
  bound: string;
  service: string;
  keyType: KeyTypeName;
  /** key: the PEM private key (this file is 0600). */
  key: string;
  /** csr: the PEM CSR sent. */
  csr: string;
  createdAt: string;
}

/** Held is one issued pair and its bundle, as PEM texts. */
export interface Held {
  key: string;
  chain: string;
  bundle: string;
}

/** AgentStore persists what the agent holds; FileStore (OUT) and memoryStore (agentSource) implement it. */
export interface AgentStore {
  /** load returns the credentials and state kept from an earlier run; undefined parts are absent or unusable. */
  load(): { creds?: Credentials; state?: AgentState };
  /** saveCredentials stores a new pair and bundle (the bundle first, then the key, then the certificate). */
  saveCredentials(next: Held): Credentials;
  /** saveBundle stores a new trust bundle beside the current pair. */
  saveBundle(bundle: string, current: Credentials): Credentials;
  /** saveState stores the state. */
  saveState(state: AgentState): void;
  /** loadRequest returns the pending request kept from an earlier run (undefined when none or damaged). Optional: without it a pending request lives in memory only. */
  loadRequest?(): PendingRequest | undefined;
  /** saveRequest stores a pending request (before it is sent). */
  saveRequest?(request: PendingRequest): void;
  /** dropRequest removes the pending request. */
  dropRequest?(): void;
  /** where: how messages name the store (OUT's path, or "memory"). */
  readonly where: string;
}

/** fileStore writes the service layout under `out` (created 0700 when missing, parents as mkdir -p). */
export function fileStore(out: string): AgentStore {
  const file = (k: keyof typeof AGENT_FILES) => path.join(out, AGENT_FILES[k].name);
  const files = { certFile: file("cert"), keyFile: file("key"), caFile: file("ca") };
  const write = (what: () => void) => {
    try {
      what();
    } catch (e) {
      throw ioFailure(e, out, "agent") ?? e;
    }
  };
  /** install renames the bundle, then the key, then the certificate into place, and drops the pending record. */
  const install = (next: Held) =>
    write(() => {
      writeFilesAtomic([
        { file: file("ca"), data: next.bundle, mode: AGENT_FILES.ca.mode },
        { file: file("key"), data: next.key, mode: AGENT_FILES.key.mode },
        { file: file("cert"), data: next.chain, mode: AGENT_FILES.cert.mode },
      ]);
      rmSync(file("pending"), { force: true });
      syncDir(out);
    });
  /** finishPending completes an install a kill interrupted; a damaged record (the kill came before its rename) is dropped. */
  const finishPending = () => {
    let held: Held;
    try {
      held = JSON.parse(readTextBounded(file("pending"), { limit: 1024 * 1024, noFollow: true })) as Held;
      parseCredentials({ cert: held.chain, key: held.key, ca: held.bundle });
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") rmSync(file("pending"), { force: true });
      return;
    }
    install(held);
  };
  let made = false;
  const ensure = () => {
    if (!made) write(() => ensureDir(out, MODES.privateDir, { parents: true }));
    made = true;
  };
  return {
    where: out,
    load() {
      let creds: Credentials | undefined;
      let state: AgentState | undefined;
      finishPending();
      try {
        creds = readCredentials(files);
      } catch {
        creds = undefined; // nothing yet, or a pair the agent replaces at its next step
      }
      try {
        state = parseState(readTextBounded(file("state"), { limit: 1024 * 1024 }));
      } catch {
        state = undefined;
      }
      return { ...(creds ? { creds } : {}), ...(state ? { state } : {}) };
    },
    saveCredentials(next) {
      ensure();
      write(() => {
        writeFileAtomic(file("pending"), JSON.stringify(next), AGENT_FILES.pending.mode);
        syncDir(out);
      });
      install(next);
      return readCredentials(files);
    },
    saveBundle(bundle) {
      ensure();
      write(() => {
        writeFileAtomic(file("ca"), bundle, AGENT_FILES.ca.mode);
        syncDir(out);
      });
      return readCredentials(files);
    },
    saveState(state) {
      ensure();
      write(() => {
        writeFileAtomic(file("state"), `${JSON.stringify(state, null, 2)}\n`, AGENT_FILES.state.mode);
        syncDir(out);
      });
    },
    loadRequest() {
      try {
        return parseRequest(readTextBounded(file("request"), { limit: 1024 * 1024, noFollow: true }));
      } catch {
        return undefined; // none, or damaged: the next attempt makes a new key
      }
    },
    saveRequest(request) {
      ensure();
      write(() => {
        writeFileAtomic(file("request"), JSON.stringify(request), AGENT_FILES.request.mode);
        syncDir(out);
      });
    },
    dropRequest() {
      write(() => {
        rmSync(file("request"), { force: true });
        syncDir(out);
      });
    },
  };
}

/** parseRequest checks agent-request.json's shape. */
function parseRequest(text: string): PendingRequest {
  const r = JSON.parse(text) as PendingRequest;
  if (
    r === null ||
    typeof r !== "object" ||
    r.version !== 1 ||
    (r.kind !== "enroll" && r.kind !== "renew") ||
    [r.bound, r.service, r.keyType, r.key, r.csr].some((x) => typeof x !== "string")
  )
    throw new Error("not a pending request (version 1)");
  return r;
}

/** readAgentState reads OUT/agent.json; a FailedError naming the file when it is missing or damaged. */
export function readAgentState(out: string): AgentState {
  const f = path.join(out, AGENT_FILES.state.name);
  let text: string;
  try {
    text = readTextBounded(f, { limit: 1024 * 1024 });
  } catch (e) {
    throw new FailedError(
      `agent: cannot read ${f}: ${(e as { reason?: string }).reason ?? (e as Error).message}\n    fix: run \`mtlskit agent --out ${out}\` first (it writes agent.json), or give the --out it writes to`,
      { cause: e },
    );
  }
  try {
    return parseState(text);
  } catch (e) {
    throw new FailedError(`agent: ${f} is damaged (${(e as Error).message}); the agent rewrites it at its next step`, {
      cause: e,
    });
  }
}

/** parseState checks agent.json's shape enough to trust its fields' types. */
function parseState(text: string): AgentState {
  const s = JSON.parse(text) as AgentState;
  if (
    s === null ||
    typeof s !== "object" ||
    s.version !== 1 ||
    typeof s.service !== "string" ||
    typeof s.status !== "string"
  )
    throw new Error("not an agent state (version 1)");
  return s;
}
