// GlideinWMS container negotiation: the frontend's GLIDEIN_Singularity_Use against the factory's
// GLIDEIN_SINGULARITY_REQUIRE (runtime-contract.md §2.2), and what the job-time status allows.
// Pure functions; no I/O.

export type FrontendUse = 'DISABLE_GWMS' | 'NEVER' | 'OPTIONAL' | 'PREFERRED' | 'REQUIRED';
export type FactoryRequire = 'NEVER' | 'OPTIONAL' | 'PREFERRED' | 'REQUIRED' | 'REQUIRED_GWMS';
export type Negotiated = 'DISABLE' | 'NEVER' | 'PREFERRED' | 'REQUIRED' | 'FAIL';

const FRONTEND: readonly FrontendUse[] = ['DISABLE_GWMS', 'NEVER', 'OPTIONAL', 'PREFERRED', 'REQUIRED'];
const FACTORY: readonly FactoryRequire[] = ['NEVER', 'OPTIONAL', 'PREFERRED', 'REQUIRED', 'REQUIRED_GWMS'];

// Rows: frontend use; columns: factory requirement, in the order of FACTORY.
const TABLE: Record<FrontendUse, readonly Negotiated[]> = {
  DISABLE_GWMS: ['DISABLE', 'DISABLE', 'DISABLE', 'DISABLE', 'FAIL'],
  NEVER: ['NEVER', 'NEVER', 'NEVER', 'FAIL', 'FAIL'],
  OPTIONAL: ['NEVER', 'NEVER', 'PREFERRED', 'REQUIRED', 'REQUIRED'],
  PREFERRED: ['NEVER', 'PREFERRED', 'PREFERRED', 'REQUIRED', 'REQUIRED'],
  REQUIRED: ['FAIL', 'REQUIRED', 'REQUIRED', 'REQUIRED', 'REQUIRED'],
};

/**
 * Combines the two settings as GlideinWMS's `combine_requirements` does: an empty frontend value
 * means DISABLE_GWMS, an empty factory value OPTIONAL, anything outside the allowed sets FAIL.
 */
export function combineRequirements(frontend: string | undefined, factory: string | undefined): { result: Negotiated; reason: string } {
  const use = (frontend ?? '').trim() === '' ? 'DISABLE_GWMS' : frontend!.trim();
  const req = (factory ?? '').trim() === '' ? 'OPTIONAL' : factory!.trim();
  if (!FRONTEND.includes(use as FrontendUse)) return { result: 'FAIL', reason: `GLIDEIN_Singularity_Use="${use}" is not one of ${FRONTEND.join(', ')}` };
  if (!FACTORY.includes(req as FactoryRequire)) return { result: 'FAIL', reason: `GLIDEIN_SINGULARITY_REQUIRE="${req}" is not one of ${FACTORY.join(', ')}` };
  const result = TABLE[use as FrontendUse][FACTORY.indexOf(req as FactoryRequire)];
  return { result, reason: `frontend ${use} x factory ${req} -> ${result}` };
}

/** Status the wrapper acts on: a job naming its own image makes containers required for it. */
export function effectiveStatus(status: Negotiated, jobHasImage: boolean): string {
  return jobHasImage ? 'REQUIRED_Singularity_image_in_job' : status;
}

/** Whether a failure may fall back to running the job without a container. */
export function mayFallBack(status: Negotiated, effective: string): boolean {
  return status === 'PREFERRED' && !effective.startsWith('REQUIRED');
}

/**
 * Classifies the runtime from the first line of `cat /proc/self/uid_map` run inside it
 * (§2.5): ",0,0," privileged, ",0,M," fakeroot, any other ",N,M," unprivileged.
 */
export function classifyMode(uidMapLine: string): 'privileged' | 'fakeroot' | 'unprivileged' | undefined {
  // eslint-disable-next-line no-control-regex
  const clean = uidMapLine.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  const squeezed = `,${clean.trim().split(/\s+/).join(',')},`;
  const m = /^,(\d+),(\d+),(\d+,)?$/.exec(squeezed);
  if (!m) return undefined;
  if (m[1] === '0' && m[2] === '0') return 'privileged';
  if (m[1] === '0') return 'fakeroot';
  return 'unprivileged';
}
