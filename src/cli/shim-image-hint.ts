// The shims' head start on a cold image: before exec'ing node, the /bin/sh shim finds the image argument the way
// parseApptainerArgs does and looks up `<image>/.singularity.d`. On a gridbox mount that is the first lookup
// inside the image, which loads the image's catalogs and begins its start-profile replay (vfs/start-profile.ts),
// so the replay's fetches run while node boots (~55 ms warm, ~130 ms with the page cache dropped here) instead
// of after it. Anywhere else, and on a warm mount, it is one stat. In the shim's own process, not a background
// one: the fork cost every warm start ~3 ms (the common case, probes run the runtime several times per job), and
// the catalogs the lookup waits for are ones the runtime's own first lookup would wait for anyway.
// Only a hint: whatever it finds or misses, the runtime parses its arguments itself.
import { VALUE_FLAG_NAMES } from '../launcher/parse-apptainer-args.js';

/**
 * `gridbox_find_image CMD ARGS...`: runs `CMD IMAGE` for the image of an exec|run|shell|test command line, and
 * nothing for any other (version, help, inspect, a usage error). Exported for the test that holds it to the parser.
 */
export function findImageFunction(): string {
  const valueFlags = VALUE_FLAG_NAMES.join('|');
  return `gridbox_find_image() {
  gridbox_cb=$1; shift
  while [ $# -gt 0 ]; do case $1 in -c|--config) shift; [ $# -gt 0 ] && shift ;; -?*) shift ;; *) break ;; esac; done
  case \${1-} in exec|run|shell|test) shift ;; *) return 0 ;; esac
  while [ $# -gt 0 ]; do
    case $1 in
      --) shift; break ;;
      ${valueFlags}) shift; [ $# -gt 0 ] && shift ;;
      -?*) shift ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] && "$gridbox_cb" "$1"
}`;
}

/** The shim's lines: the function, the probe (a builtin: no process, no output) and its call. */
export function imageHintLines(): string {
  return `${findImageFunction()}
gridbox_image_hint() { [ -d "$1/.singularity.d" ]; }
gridbox_find_image gridbox_image_hint "$@"`;
}
