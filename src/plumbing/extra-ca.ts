// NODE_EXTRA_CA_CERTS without its start-up cost. Node 20 reads and parses the whole file, with its own bundled
// roots, at start, before any script: ~50 ms of every start on this machine kind, where the variable names the
// system bundle (a bare `node -e 0` is ~25 ms without it). bin/gridbox and the apptainer shims start node with
// the variable moved aside to GRIDBOX_SHIM_SAVED_NODE_EXTRA_CA_CERTS; the entry point notes that here before
// it puts the variable back for children and containers, and TLS clients ask tlsTrustOptions() when they are
// made, so an https repository, registry or accounting server is trusted exactly as node would have: its
// bundled roots plus the file's certificates (this node's default store is the bundled one).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type tls from 'node:tls';

export const SAVED_EXTRA_CA_VAR = 'GRIDBOX_SHIM_SAVED_NODE_EXTRA_CA_CERTS';

let deferredFile: string | undefined;
let options: { ca?: string[] } | undefined;

/**
 * Called by an entry point before anything restores the environment: a saved file and no NODE_EXTRA_CA_CERTS
 * means node started without it, so this process loads it itself when it first needs TLS.
 */
export function noteDeferredExtraCa(env: NodeJS.ProcessEnv = process.env): void {
  const saved = env[SAVED_EXTRA_CA_VAR];
  if (saved !== undefined && saved !== '' && env.NODE_EXTRA_CA_CERTS === undefined) deferredFile = saved;
}

/** The file this process defers, if any (a daemon it starts gets it moved aside again). */
export function deferredExtraCaFile(): string | undefined {
  return deferredFile;
}

/**
 * Options for https agents and requests: empty when node loaded the variable itself (or there is none), else the
 * `ca` list node would have used. An unreadable file is warned about and ignored, as node does at start.
 */
export function tlsTrustOptions(): { ca?: string[] } {
  if (deferredFile === undefined) return {};
  if (options !== undefined) return options;
  let extra: string;
  try {
    extra = readFileSync(deferredFile, 'utf8');
  } catch (e) {
    process.emitWarning(`Ignoring extra certs from \`${deferredFile}\`, load failed: ${(e as Error).message}`);
    return (options = {});
  }
  // node:tls is loaded here, not at start: plain-http commands never pay for it.
  const { rootCertificates } = createRequire(import.meta.url)('node:tls') as typeof tls;
  return (options = { ca: [...rootCertificates, extra] });
}

/** The environment for a node entry point of ours that this process starts (a mount daemon): the file moved aside. */
export function extraCaMovedAside(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const file = env.NODE_EXTRA_CA_CERTS;
  if (file === undefined) return env;
  const moved: NodeJS.ProcessEnv = { ...env, [SAVED_EXTRA_CA_VAR]: file };
  delete moved.NODE_EXTRA_CA_CERTS;
  return moved;
}
