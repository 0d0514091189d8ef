// Plain-data types of the runtime: parsed Apptainer options, the host and image facts the builder
// reads, and the LaunchSpec it returns (bwrap argv, environment, messages). No behaviour here.

/** Apptainer's message levels (runtime-contract.md §3.1): silent -3, quiet -1, default 1, verbose 4, debug 5. */
export type MessageLevel = 'FATAL' | 'ERROR' | 'WARNING' | 'INFO' | 'VERBOSE' | 'DEBUG';

export interface Message { level: MessageLevel; text: string }

export type Action = 'exec' | 'run' | 'shell' | 'test';

/** One user bind, as parsed from `src[:dst[:ro|rw]]`. */
export interface BindSpec { source: string; dest: string; readOnly: boolean }

/** The options of exec/run/shell/test after merging CLI flags and the APPTAINER_ or SINGULARITY_ option variables. */
export interface LaunchOptions {
  action: Action;
  image: string;
  /** exec: the command and its arguments; run/test: arguments for the script. */
  args: string[];
  binds: BindSpec[];
  scratch: string[];
  workdir?: string;
  pwd?: string;
  /** `--home src[:dst]` as given. */
  home?: string;
  noHome: boolean;
  contain: boolean;
  containAll: boolean;
  cleanEnv: boolean;
  pid: boolean;
  ipc: boolean;
  net: boolean;
  uts: boolean;
  hostname?: string;
  nv: boolean;
  /** `--env` entries KEY=VAL, in order. */
  envs: string[];
  /** Contents of each `--env-file`, already read by the CLI, in order. */
  envFiles: string[];
  shell?: string;
  /** Messages produced while parsing (ignored or unsupported flags). */
  notes: Message[];
}

export type EntryType = 'dir' | 'file' | 'link' | 'other';

/** Read-only view of a tree (the image, or the host), addressed by absolute paths inside it. */
export interface FsView {
  /** Type of the entry itself (lstat: symlinks are 'link'); undefined when absent. */
  typeOf(path: string): EntryType | undefined;
  /** True for a regular file with any execute bit (following symlinks). */
  isExecutable(path: string): boolean;
  /** Names in a directory, sorted; [] when absent. */
  list(path: string): string[];
  /** Text of a small regular file, undefined when absent or not a file. */
  read(path: string): string | undefined;
  /** Target of a symlink, verbatim; undefined when not a symlink. */
  readLink(path: string): string | undefined;
}

/** Facts about the caller and the host, gathered once by the CLI. */
export interface HostFacts {
  uid: number;
  gid: number;
  user: string;
  gecos: string;
  /** Home directory from the host's passwd entry. */
  home: string;
  /** The caller's groups that resolve on the host (primary first). */
  groups: Array<{ name: string; gid: number }>;
  cwd: string;
  /** Host view used for bind sources and host files. */
  fs: FsView;
  /** NVIDIA driver files found on the host (for --nv); empty lists when none. */
  nvidia: NvidiaDriver;
}

export interface NvidiaDriver { libs: string[]; bins: string[]; devices: string[] }

/** What the image inspection found in `/.singularity.d` and `/etc`. */
export interface ImageInfo {
  /** Absolute path as given (unresolved): APPTAINER_CONTAINER. */
  path: string;
  /** Symlink-resolved directory bound as the root. */
  root: string;
  fs: FsView;
  hasShell: boolean;
  /** `/.singularity.d/env/*.sh` names in lexical order. */
  envScripts: string[];
  runscript?: string;
  testScript?: string;
  labels: Record<string, string>;
  /** `.singularity.d/workdir`: the OCI WorkingDir, honoured by `run` without --pwd. */
  workdir?: string;
}

/** A small file the executor hands to bwrap (`--ro-bind-data FD DEST`), FD = 4 + index. */
export interface DataFile { dest: string; content: string }

export interface LaunchSpec {
  /** Arguments to /usr/bin/bwrap, without the program name; ends with the command. */
  argv: string[];
  /** Environment bwrap and the payload start with. */
  env: Record<string, string>;
  files: DataFile[];
  /** Host directories to create (mode 0700) before launching (workdir backing dirs). */
  mkdirs: string[];
  messages: Message[];
  /** When set, nothing is launched and this is the exit status (e.g. `test` without a test script). */
  exitWithoutLaunch?: number;
  /** True when a PID namespace is created: the payload is a child of bwrap's init. */
  pidNamespace: boolean;
}

/** File descriptor bwrap writes its JSON status to (child pid, then exit code). */
export const STATUS_FD = 3;
/** First descriptor of the DataFile pipes. */
export const FIRST_DATA_FD = 4;
