// Environment variables node acts on at its own start, which the apptainer/singularity shims hand to the runtime
// under other names and the runtime bundle puts back before anything reads the environment, so the container
// still gets the caller's environment unchanged (Apptainer passes it through) while the runtime's node does not
// pay for it or run it: NODE_EXTRA_CA_CERTS makes node parse a whole CA bundle before any script (on this
// machine kind a third of a bare `node -e 0`, issue 11), NODE_OPTIONS may carry a caller's --require or --inspect.
// Kept only when the runtime itself needs it: NODE_EXTRA_CA_CERTS when start records are posted over https.

/** What the shim moves aside, and the prefix of the names it moves them to. */
export const MOVED_NODE_VARS = ['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'] as const;
export const SAVED_PREFIX = 'GRIDBOX_SHIM_SAVED_';

/**
 * Puts the moved variables back. Self-contained on purpose: the runtime bundle embeds its source text
 * (install-shims-bundle.ts) and runs it before its own code and before any hand-over to main.js.
 */
export function restoreShimEnv(env: NodeJS.ProcessEnv): void {
  for (const name of ['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS']) {
    const saved = env[`GRIDBOX_SHIM_SAVED_${name}`];
    if (saved === undefined) continue;
    env[name] = saved;
    delete env[`GRIDBOX_SHIM_SAVED_${name}`];
  }
}

/**
 * The shim's /bin/sh lines that move the variables aside (set-but-empty counts as set). A saved name the
 * caller happened to have is cleared, so that only what this shim moved is ever restored.
 */
export function shimEnvLines(): string {
  const move = (name: string): string => {
    const saved = `${SAVED_PREFIX}${name}`;
    return `if [ -n "\${${name}+x}" ]; then ${saved}=\$${name}; export ${saved}; unset ${name}; else unset ${saved}; fi`;
  };
  return [
    move('NODE_OPTIONS'),
    // Posting start records over https may need the extra CAs (node reads them at start only).
    `case "\${GRIDBOX_ACCOUNTING_URL-}" in https:*) unset ${SAVED_PREFIX}NODE_EXTRA_CA_CERTS ;; *) ${move('NODE_EXTRA_CA_CERTS')} ;; esac`,
  ].join('\n');
}
