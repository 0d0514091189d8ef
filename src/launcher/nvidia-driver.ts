// Finds the NVIDIA driver's user-space libraries, tools and device nodes on the host for --nv, the way
// Apptainer's nvliblist.conf names them. Reads through an FsView, so tests use a fake driver layout.
import { posix } from 'node:path';
import type { FsView, NvidiaDriver } from './launch-spec.js';

const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib64', '/lib/x86_64-linux-gnu'];
const LIB_PATTERN = /^(libcuda|libcudadebugger|libnvidia-[a-z0-9-]+|libnvcuvid|libnvoptix|libGLX_nvidia|libEGL_nvidia|libGLESv[12]_CM?_nvidia|libvdpau_nvidia|libOpenCL)\.so(\.[0-9.]+)?$/;
const BINS = ['nvidia-smi', 'nvidia-debugdump', 'nvidia-persistenced', 'nvidia-cuda-mps-control', 'nvidia-cuda-mps-server'];

export function findNvidiaDriver(fs: FsView): NvidiaDriver {
  const libs: string[] = [];
  const seen = new Set<string>();
  for (const dir of LIB_DIRS) {
    for (const name of fs.list(dir)) {
      if (!LIB_PATTERN.test(name) || seen.has(name)) continue;
      seen.add(name);
      libs.push(posix.join(dir, name));
    }
  }
  const bins = BINS.map((b) => posix.join('/usr/bin', b)).filter((p) => fs.isExecutable(p));
  const devices = fs.list('/dev').filter((n) => /^nvidia/.test(n)).map((n) => posix.join('/dev', n));
  return { libs, bins, devices };
}
