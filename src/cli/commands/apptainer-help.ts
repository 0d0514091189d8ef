// `--help` of the runtime commands, laid out the way Apptainer's cobra help template lays it out (a short line,
// Usage, Description, Options, Global Options, Examples, a closing pointer) so scripts and people used to
// `apptainer exec --help` find things where they expect. The texts are ours and describe what gridbox does.
import type { HelpTopic } from '../../launcher/parse-apptainer-args.js';

interface Opt { flags: string; arg?: string; text: string }

const GLOBAL: Opt[] = [
  { flags: '-d, --debug', text: 'print debugging information (highest verbosity)' },
  { flags: '-h, --help', text: 'help for the command' },
  { flags: '    --nocolor', text: 'accepted for compatibility (output is never coloured)' },
  { flags: '-q, --quiet', text: 'suppress normal output' },
  { flags: '-s, --silent', text: 'only print errors' },
  { flags: '-v, --verbose', text: 'print additional information' },
];

const ACTION: Opt[] = [
  { flags: '-B, --bind', arg: 'strings', text: 'a user-bind path specification: src[:dest[:opts]], opts ro or rw; several separated by commas (also APPTAINER_BIND)' },
  { flags: '-e, --cleanenv', text: 'clean the environment before running the container (keeps TERM, the proxy variables and APPTAINERENV_*)' },
  { flags: '-C, --containall', text: 'contain file systems, PID and IPC namespaces, and clean the environment' },
  { flags: '-c, --contain', text: 'use minimal /dev and empty /tmp, /var/tmp and home directories instead of the host\'s' },
  { flags: '    --env', arg: 'strings', text: 'pass environment variables into the container: KEY=VALUE' },
  { flags: '    --env-file', arg: 'string', text: 'pass environment variables from a file (KEY=VALUE lines)' },
  { flags: '-H, --home', arg: 'string', text: 'a home directory specification: src[:dest] (bound even with --contain)' },
  { flags: '    --hostname', arg: 'string', text: 'set the container hostname (implies --uts)' },
  { flags: '-i, --ipc', text: 'run the container in a new IPC namespace' },
  { flags: '-n, --net', text: 'run the container in a new, unconfigured network namespace (loopback only)' },
  { flags: '    --no-home', text: 'do not mount the home directory' },
  { flags: '    --no-pid', text: 'do not run the container in a new PID namespace (overrides --pid and -C)' },
  { flags: '    --nv', text: 'bind the host NVIDIA driver libraries, tools and devices' },
  { flags: '-p, --pid', text: 'run the container in a new PID namespace' },
  { flags: '    --pwd', arg: 'string', text: 'initial working directory inside the container (must exist there)' },
  { flags: '-S, --scratch', arg: 'strings', text: 'a fresh writable directory at this path inside the container; backed by --workdir if given' },
  { flags: '    --shell', arg: 'string', text: 'the shell for the shell command' },
  { flags: '    --uts', text: 'run the container in a new UTS namespace' },
  { flags: '-W, --workdir', arg: 'string', text: 'host directory backing /tmp, /var/tmp, scratch and a contained home' },
];

const INSPECT: Opt[] = [
  { flags: '    --all', text: 'show all available data (JSON)' },
  { flags: '-d, --deffile', text: 'show the definition file used to build the image' },
  { flags: '-e, --environment', text: 'show the environment scripts of the image' },
  { flags: '-H, --helpfile', text: 'show the runscript help file' },
  { flags: '-j, --json', text: 'print the data as JSON' },
  { flags: '-l, --labels', text: 'show the labels (the default)' },
  { flags: '-r, --runscript', text: 'show the runscript' },
  { flags: '-t, --test', text: 'show the test script' },
];

interface Page { use: string; short: string; long: string; options: Opt[]; examples: string[] }

const FORMATS = `
  Images are sandbox directories (an unpacked root file system, optionally with
  Apptainer metadata in /.singularity.d), for example the trees \`gridbox sync\`
  publishes on a CernVM-FS repository: /cvmfs/<repository>/<registry>/<name>:<tag>.
  SIF files and URIs (docker://, library://, oras://, instance://) are refused.`;

const PAGES: Record<HelpTopic, Page> = {
  exec: {
    use: 'exec [exec options...] <container> <command>',
    short: 'Run a command within a container',
    long: `
  Runs <command> with its arguments inside the container, unprivileged, in a
  new user and mount namespace (bubblewrap). The command's exit status is
  returned; a runtime error exits 255 with a FATAL: line.
${FORMATS}`,
    options: ACTION,
    examples: [
      '$ {prog} exec /cvmfs/repo.example.org/debian:12 cat /etc/debian_version',
      '$ {prog} exec --contain --ipc --pid --home $PWD:/srv --pwd /srv IMAGE /bin/sh -c ./job.sh',
      '$ {prog} -s exec -S /tmp -S /var/tmp -W $PWD --pwd $PWD -B $PWD --home $PWD -C IMAGE ./job.sh',
    ],
  },
  run: {
    use: 'run [run options...] <container> [args...]',
    short: 'Run the user-defined default command within a container',
    long: `
  Runs the image's runscript (/.singularity.d/runscript, made from the OCI
  Entrypoint and Cmd by gridbox sync) with the arguments after the image, in
  the image's WorkingDir unless --pwd is given. Without a runscript /bin/sh is
  started; without either the command fails.
${FORMATS}`,
    options: ACTION,
    examples: ['$ {prog} run IMAGE one two three', '$ {prog} run --pwd /data IMAGE'],
  },
  shell: {
    use: 'shell [shell options...] <container>',
    short: 'Run a shell within a container',
    long: `
  Starts an interactive shell in the container: --shell, else $APPTAINER_SHELL,
  else /bin/bash --norc, else /bin/sh.
${FORMATS}`,
    options: ACTION,
    examples: ['$ {prog} shell IMAGE', '$ {prog} shell --contain --home $PWD:/srv IMAGE'],
  },
  test: {
    use: 'test [exec options...] <image path>',
    short: 'Run the user-defined tests within a container',
    long: `
  Runs the image's test script (/.singularity.d/test) if it has one and
  returns its exit status; an image without one exits 0 with an info message
  (HTCondor runs this before every job).
${FORMATS}`,
    options: ACTION,
    examples: ['$ {prog} -s -q test -S /tmp -S /var/tmp -W $PWD --pwd $PWD --home $PWD -C IMAGE'],
  },
  inspect: {
    use: 'inspect [inspect options...] <image path>',
    short: 'Show metadata for an image',
    long: `
  Shows the labels, environment scripts, runscript, test script, help file or
  definition file recorded in the image's /.singularity.d, as text (key: value
  lines for labels) or as JSON with --json.`,
    options: INSPECT,
    examples: ['$ {prog} inspect IMAGE', '$ {prog} inspect --json --labels IMAGE', '$ {prog} inspect -e IMAGE'],
  },
  version: {
    use: 'version',
    short: 'Show the version of the Apptainer release whose behaviour gridbox follows',
    long: `
  Prints the bare version number; \`--version\` prints "apptainer version X.Y.Z",
  the one line HTCondor and GlideinWMS read.`,
    options: [],
    examples: ['$ {prog} version', '$ {prog} --version'],
  },
};

function table(opts: Opt[]): string {
  const left = opts.map((o) => `  ${o.flags}${o.arg ? ` ${o.arg}` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 3;
  return opts.map((o, i) => {
    // Wrap the description at 80 columns under its own column, as cobra's FlagUsagesWrapped does.
    const words = o.text.split(' ');
    const lines: string[] = [];
    let line = '';
    for (const w of words) {
      if (line !== '' && width + line.length + 1 + w.length > 80) { lines.push(line); line = w; } else line = line === '' ? w : `${line} ${w}`;
    }
    lines.push(line);
    return `${left[i].padEnd(width)}${lines.join(`\n${' '.repeat(width)}`)}`;
  }).join('\n');
}

const FOOTER = '\n\nFor additional help, see the Runtime section of the gridbox README.\n';

/** The help page for a runtime command (or the top level), with `prog` (apptainer, singularity, gridbox) in the usage. */
export function helpText(topic: HelpTopic | undefined, prog: string): string {
  if (topic === undefined) {
    const cmds = (Object.keys(PAGES) as HelpTopic[]).map((t) => `  ${t.padEnd(9)} ${PAGES[t].short}`).join('\n');
    return `Linux container runtime for grid jobs: Apptainer's command line on unprivileged user namespaces

Usage:
  ${prog} [global options...] <command>

Description:
  Runs sandbox-directory images (as published on CernVM-FS by gridbox sync)
  the way Apptainer does, with its options, binds, environment rules and exit
  codes, so HTCondor and GlideinWMS can use it as their apptainer/singularity.

Options:
${table([...GLOBAL, { flags: '-V, --version', text: 'print "apptainer version X.Y.Z" and exit' }])}

Available Commands:
${cmds}

Examples:
  $ ${prog} help <command>
  $ ${prog} exec --help${FOOTER}`;
  }
  const p = PAGES[topic];
  const options = p.options.length > 0 ? `\n\nOptions:\n${table(p.options)}` : '';
  return `${p.short}

Usage:
  ${prog} ${p.use}

Description:${p.long}${options}

Global Options:
${table(GLOBAL)}

Examples:
${p.examples.map((e) => `  ${e.replaceAll('{prog}', prog)}`).join('\n')}${FOOTER}`;
}
