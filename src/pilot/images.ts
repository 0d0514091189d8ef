// Image selection as the GlideinWMS wrapper does it (runtime-contract.md §2.3): the
// SINGULARITY_IMAGES_DICT, the platform list from REQUIRED_OS, +SingularityImage precedence,
// and the CVMFS restriction. Pure functions over strings.

export interface ImageDict { keys: string[]; values: Map<string, string> }

/** Parses `key:value,key:value`; a value may itself contain ':' (URIs), keys may not. */
export function parseImagesDict(text: string | undefined, legacy: Record<string, string | undefined> = {}): ImageDict {
  const keys: string[] = [];
  const values = new Map<string, string>();
  const put = (k: string, v: string): void => { if (!values.has(k)) keys.push(k); values.set(k, v); };
  for (const item of (text ?? '').split(',')) {
    const t = item.trim();
    if (t === '') continue;
    const i = t.indexOf(':');
    put(i < 0 ? t : t.slice(0, i), i < 0 ? '' : t.slice(i + 1));
  }
  // Legacy variables overwrite their keys (SINGULARITY_IMAGE_DEFAULT6/7/DEFAULT).
  const legacyKeys: Record<string, string> = { SINGULARITY_IMAGE_DEFAULT6: 'rhel6', SINGULARITY_IMAGE_DEFAULT7: 'rhel7', SINGULARITY_IMAGE_DEFAULT: 'default' };
  for (const [name, key] of Object.entries(legacyKeys)) {
    const v = legacy[name];
    if (v !== undefined && v !== '') put(key, v);
  }
  return { keys, values };
}

/** DESIRED_OS = intersection of the glidein's and the job's lists; "any" on one side yields the other. */
export function desiredOs(glideinRequiredOs: string | undefined, jobRequiredOs: string | undefined): string[] {
  const norm = (s: string | undefined): string[] => {
    const list = (s ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
    return list.length === 0 ? ['any'] : list;
  };
  const a = norm(glideinRequiredOs);
  const b = norm(jobRequiredOs);
  if (a.includes('any')) return b;
  if (b.includes('any')) return a;
  // GlideinWMS computes the intersection in Python and sorts it, so "rhel8" beats "rhel9".
  return a.filter((x) => b.includes(x)).sort();
}

/** The key preference list for a platform list ("any" expands to the default order). */
export function platformPreference(desired: string[]): string[] {
  return desired.length === 1 && desired[0] === 'any' ? ['default', 'rhel9', 'rhel8', 'rhel7', 'rhel6', 'any'] : desired;
}

/** `dict_get_val`: the first requested key with a non-empty value; with "any", default or the first entry. */
export function lookupImage(dict: ImageDict, requested: string[]): string | undefined {
  for (const key of requested) {
    const v = dict.values.get(key);
    if (v !== undefined && v !== '') return v;
  }
  if (requested.includes('any')) {
    const d = dict.values.get('default');
    if (d !== undefined && d !== '') return d;
    const first = dict.keys.find((k) => (dict.values.get(k) ?? '') !== '');
    return first === undefined ? undefined : dict.values.get(first);
  }
  return undefined;
}

export type ImageChoice =
  | { ok: true; image: string; source: 'job' | 'dict'; key?: string }
  | { ok: false; code: 1 | 3; reason: string };

/**
 * Picks the image for a job: +SingularityImage wins over everything; else the dictionary by
 * platform. With the `cvmfs` restriction the image must lie under the CVMFS root.
 */
export function selectImage(opts: {
  jobImage?: string; dict: ImageDict; glideinRequiredOs?: string; jobRequiredOs?: string;
  restrictions?: string[]; cvmfsRoot?: string;
}): ImageChoice {
  const restrictions = opts.restrictions ?? ['cvmfs'];
  let image: string | undefined;
  let source: 'job' | 'dict' = 'dict';
  if (opts.jobImage !== undefined && opts.jobImage.trim() !== '') {
    image = opts.jobImage.trim().replace(/^"|"$/g, '');
    source = 'job';
  } else {
    const desired = desiredOs(opts.glideinRequiredOs, opts.jobRequiredOs);
    if (desired.length === 0) return { ok: false, code: 1, reason: `No common platform between glidein "${opts.glideinRequiredOs}" and job REQUIRED_OS "${opts.jobRequiredOs}"` };
    image = lookupImage(opts.dict, platformPreference(desired));
    if (image === undefined) return { ok: false, code: 1, reason: `No Singularity image available for platforms ${desired.join(',')}` };
  }
  const root = (opts.cvmfsRoot ?? '/cvmfs').replace(/\/+$/, '');
  if (restrictions.includes('cvmfs') && !image.startsWith('/cvmfs/') && !image.startsWith(`${root}/`)) {
    return { ok: false, code: 3, reason: `Image "${image}" is not in CVMFS (restriction cvmfs)` };
  }
  return { ok: true, image, source };
}

/** Translates a /cvmfs path to the local CVMFS mount directory (CVMFS_MOUNT_DIR). */
export function translateCvmfsPath(path: string, cvmfsMountDir: string | undefined): string {
  if (cvmfsMountDir === undefined || cvmfsMountDir === '' || cvmfsMountDir === '/cvmfs') return path;
  if (path === '/cvmfs' || path.startsWith('/cvmfs/')) return cvmfsMountDir.replace(/\/+$/, '') + path.slice('/cvmfs'.length);
  return path;
}

/** The dictionary back in `key:value,...` form, keys in first-seen order (legacy keys included). */
export function formatImagesDict(dict: ImageDict): string {
  return dict.keys.map((k) => (dict.values.get(k) === '' ? k : `${k}:${dict.values.get(k)}`)).join(',');
}
