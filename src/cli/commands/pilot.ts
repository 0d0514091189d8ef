// `gridbox pilot`: the GlideinWMS-style pieces a glidein runs.
//   pilot setup GLIDEIN_CONFIG   the glidein's container setup: negotiate, check images, test a runtime, advertise
//   pilot job [opts] -- CMD..    the user-job wrapper: pick the image, run CMD in it, pass back its exit code
//   pilot explain [opts] -- CMD  what `pilot job` would decide, each step and why, without running anything
//   pilot negotiate              print the combined container policy (GLIDEIN_Singularity_Use x GLIDEIN_SINGULARITY_REQUIRE)
// Job inputs come from the environment, glidein_config (--glidein-config or $GLIDEIN_CONFIG) and HTCondor's
// ads ($_CONDOR_JOB_AD / $_CONDOR_MACHINE_AD, or --job-ad / --machine-ad), as in GlideinWMS.
import { Command } from 'commander';
import { combineRequirements } from '../../pilot/negotiate.js';
import { parseGlideinConfig } from '../../pilot/glidein-config.js';
import { jobCommand, explainCommand, readOptional } from './pilot-job.js';
import { setupCommand } from './pilot-setup.js';

export async function run(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('gridbox pilot').exitOverride();
  program.command('negotiate').description('print the negotiated container policy').action(() => {
    const gc = parseGlideinConfig(readOptional(process.env.GLIDEIN_CONFIG));
    const n = combineRequirements(process.env.GLIDEIN_Singularity_Use ?? gc.get('GLIDEIN_Singularity_Use'), process.env.GLIDEIN_SINGULARITY_REQUIRE ?? gc.get('GLIDEIN_SINGULARITY_REQUIRE'));
    process.stdout.write(`${n.result}\n`);
    code = n.result === 'FAIL' ? 1 : 0;
  });
  program.command('setup').description("the glidein's container setup (GlideinWMS singularity_setup.sh): negotiate, check images, find and test a runtime, advertise")
    .argument('<glidein_config>')
    .option('--json <file>', 'where to write the JSON record (default: gridbox-setup.json beside glidein_config)')
    .option('--shim-dir <dir>', "where to write gridbox's own apptainer shim (default: gridbox-bin/ beside glidein_config)")
    .option('--quiet', 'no decision log on stdout')
    .action(async (configPath: string, opts) => { code = await setupCommand(configPath, opts); });
  const jobOptions = (c: Command): Command => c
    .option('--glidein-config <file>').option('--job-ad <file>').option('--machine-ad <file>')
    .option('--runtime <path>', 'the runtime to exec (default: the machine ad SINGULARITY_PATH, else gridbox itself)')
    .option('--status <status>', 'override GWMS_SINGULARITY_STATUS')
    .option('--exit-sleep <seconds>', 'sleep before failing, as GlideinWMS does (600 s there) to keep a broken node from eating jobs', '0')
    .option('--no-accounting', 'do not record the container start')
    .argument('<command...>');
  jobOptions(program.command('job').description('run a job command inside the image the job asked for'))
    .action(async (cmd: string[], opts) => { code = await jobCommand(cmd, opts); });
  jobOptions(program.command('explain').description('print what `pilot job` would decide and why, without running the job'))
    .action((cmd: string[], opts) => { code = explainCommand(cmd, opts); });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    // commander's own usage errors carry an exit code; anything else (a GridboxError) goes to main, which prints it.
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && c.startsWith('commander.')) return (e as { exitCode?: number }).exitCode ?? 2;
    throw e;
  }
  return code;
}
