// `inspect` output for a sandbox image (runtime-contract.md §3.8): labels as `key: value` lines, runscript,
// test, environment files with headers, or Apptainer's tab-indented JSON. Pure formatting over an ImageInfo.
import type { ImageInfo } from './launch-spec.js';
import type { InspectShow } from './parse-apptainer-args.js';

function environmentFiles(image: ImageInfo): Array<[string, string]> {
  return image.envScripts
    .filter((n) => /^10-docker.*\.sh$/.test(n) || /^9\d-environment\.sh$/.test(n))
    .map((n): [string, string] => [`/.singularity.d/env/${n}`, image.fs.read(`/.singularity.d/env/${n}`) ?? '']);
}

export function inspectImage(image: ImageInfo, show: InspectShow): string {
  const read = (p: string): string | undefined => image.fs.read(p);
  if (show.json || show.all) {
    const attributes: Record<string, unknown> = {};
    const want = (k: boolean): boolean => show.all || k;
    if (want(show.labels) && Object.keys(image.labels).length > 0) attributes.labels = image.labels;
    if (want(show.environment)) {
      const env = Object.fromEntries(environmentFiles(image));
      if (Object.keys(env).length > 0) attributes.environment = env;
    }
    const files: Array<[string, boolean, string]> = [
      ['runscript', show.runscript, '/.singularity.d/runscript'], ['test', show.test, '/.singularity.d/test'],
      ['helpfile', show.helpfile, '/.singularity.d/runscript.help'], ['deffile', show.deffile, '/.singularity.d/Singularity'],
    ];
    for (const [key, flag, path] of files) {
      const text = want(flag) ? read(path) : undefined;
      if (text !== undefined && text !== '') attributes[key] = text;
    }
    return `${JSON.stringify({ data: { attributes }, type: 'container' }, null, '\t')}\n`;
  }
  let out = '';
  if (show.labels) {
    for (const k of Object.keys(image.labels).sort()) out += `${k}: ${image.labels[k]}\n`;
  }
  if (show.runscript) out += read('/.singularity.d/runscript') ?? '';
  if (show.test) out += read('/.singularity.d/test') ?? '';
  if (show.helpfile) out += read('/.singularity.d/runscript.help') ?? '';
  if (show.deffile) out += read('/.singularity.d/Singularity') ?? '';
  if (show.environment) {
    for (const [path, text] of environmentFiles(image)) out += `=== ${path} ===\n${text}\n`;
  }
  return out;
}
