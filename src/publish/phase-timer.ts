// Wall-clock time per publish phase, printed to stderr when GRIDBOX_PUBLISH_TIMING=1 (for profiling
// the publisher; off by default, and then it costs one env lookup); image sync uses it under
// GRIDBOX_SYNC_TIMING=1. Not a metrics system.

export interface PhaseTimer {
  /** Ends the running phase under `name` and starts the next one. */
  mark(name: string): void;
  /** Prints the phases (when enabled). */
  done(label: string): void;
}

export function phaseTimer(env = 'GRIDBOX_PUBLISH_TIMING', what = 'publish'): PhaseTimer {
  if (process.env[env] !== '1') return { mark() {}, done() {} };
  const t0 = process.hrtime.bigint();
  let last = t0;
  let lastCpu = process.cpuUsage();
  const phases: string[] = [];
  return {
    mark(name) {
      // CPU time of the whole process, worker threads included: shows whether a phase waits or works.
      const now = process.hrtime.bigint();
      const cpu = process.cpuUsage(lastCpu);
      phases.push(`${name} ${(Number(now - last) / 1e6).toFixed(0)}ms (cpu ${(cpu.user / 1e3).toFixed(0)}+${(cpu.system / 1e3).toFixed(0)}ms sys)`);
      last = now;
      lastCpu = process.cpuUsage();
    },
    done(label) {
      process.stderr.write(`[${what} timing] ${label}: ${phases.join(', ')}; total ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0)}ms\n`);
    },
  };
}
