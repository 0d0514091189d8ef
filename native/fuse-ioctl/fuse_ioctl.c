// The system calls gridbox's FUSE server needs and Node cannot make itself: the two /dev/fuse ioctls of FUSE
// passthrough (Linux >= 6.9, include/uapi/linux/fuse.h: register an open file as a backing file and get its
// backing_id for an OPEN reply, drop that registration), and mount(2) of the FUSE connection, which spares
// a daemon the start of mount(8) (a blocking fork and exec, ~25 ms of a mount with a cold page cache); and
// a posix_spawn(3)-like start with pipes on fixed descriptors, for the runtime's start of bwrap: Node's child_process costs
// a module graph (net, streams) and a fork of the whole Node process, ~14 ms of a ~120 ms `apptainer exec`.
// getxattr(2) for the accounting's reading of a mount's counters. posix_fadvise(2) WILLNEED, for the cache's
// read-ahead: the kernel reads the files into the page cache in the background, no bytes come to user space.
// And fast_read.c: the openless mount's READs of cached files, answered without their bytes entering JavaScript.
// Nothing else: the rest of the FUSE protocol stays in TypeScript (src/fuse/), the launch logic in src/launcher/.
#define _GNU_SOURCE // pipe2, F_GETPIPE_SZ
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

// Defined here rather than taken from <linux/fuse.h>, whose copy on older build hosts lacks them.
struct gridbox_fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define GRIDBOX_FUSE_DEV_IOC_MAGIC 229
#define GRIDBOX_FUSE_DEV_IOC_BACKING_OPEN _IOW(GRIDBOX_FUSE_DEV_IOC_MAGIC, 1, struct gridbox_fuse_backing_map)
#define GRIDBOX_FUSE_DEV_IOC_BACKING_CLOSE _IOW(GRIDBOX_FUSE_DEV_IOC_MAGIC, 2, uint32_t)

static int two_ints(napi_env env, napi_callback_info info, int32_t* a, int32_t* b) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) return 0;
  if (napi_get_value_int32(env, argv[0], a) != napi_ok) return 0;
  if (napi_get_value_int32(env, argv[1], b) != napi_ok) return 0;
  return 1;
}

static napi_value result(napi_env env, int32_t v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

// backingOpen(fuseFd, fd) -> backing_id (> 0), or -errno
static napi_value backing_open(napi_env env, napi_callback_info info) {
  int32_t dev, fd;
  if (!two_ints(env, info, &dev, &fd)) {
    napi_throw_type_error(env, NULL, "backingOpen(fuseFd, fd) takes two integers");
    return NULL;
  }
  struct gridbox_fuse_backing_map map = { .fd = fd, .flags = 0, .padding = 0 };
  int id = ioctl(dev, GRIDBOX_FUSE_DEV_IOC_BACKING_OPEN, &map);
  return result(env, id < 0 ? -errno : id);
}

// backingClose(fuseFd, backingId) -> 0, or -errno
static napi_value backing_close(napi_env env, napi_callback_info info) {
  int32_t dev, id;
  if (!two_ints(env, info, &dev, &id)) {
    napi_throw_type_error(env, NULL, "backingClose(fuseFd, backingId) takes two integers");
    return NULL;
  }
  uint32_t backing_id = (uint32_t)id;
  int rc = ioctl(dev, GRIDBOX_FUSE_DEV_IOC_BACKING_CLOSE, &backing_id);
  return result(env, rc < 0 ? -errno : 0);
}

// A string argument, malloc'ed (the caller frees it), or NULL when it is not a string.
static char* string_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char* s = malloc(len + 1);
  if (s == NULL) return NULL;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) { free(s); return NULL; }
  return s;
}

// mount(source, target, fstype, flags, data) -> 0, or -errno
static napi_value do_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t flags;
  char* str[4] = { NULL, NULL, NULL, NULL };
  int ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 5 &&
           napi_get_value_int32(env, argv[3], &flags) == napi_ok;
  for (int i = 0; ok && i < 4; i++) ok = (str[i] = string_arg(env, argv[i == 3 ? 4 : i])) != NULL;
  napi_value out = NULL;
  if (!ok) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data) takes four strings and an integer");
  } else {
    int rc = mount(str[0], str[1], str[2], (unsigned long)(uint32_t)flags, str[3]);
    out = result(env, rc < 0 ? -errno : 0);
  }
  for (int i = 0; i < 4; i++) free(str[i]);
  return out;
}


// What the child of spawn_child needs; it runs on its own stack in the parent's memory (CLONE_VM), so it only
// reads this and makes system calls.
struct spawn_args {
  const char* path;
  char** argv;
  char** envp;
  const int* child_end;
  int npipes;
  int first_fd;
  int err_fd; // close-on-exec: reads EOF in the parent when the exec succeeded, else the child's errno
};

// The kernel's struct sigaction (rt_sigaction(2)), to reach the two signals glibc keeps for itself (32, 33),
// which its own sigaction refuses to touch and its posix_spawn leaves ignored in the child.
struct kernel_sigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  uint64_t mask;
};

static int spawn_child_main(void* p) {
  const struct spawn_args* a = p;
  // Every signal at its default: a handler address means nothing after exec, and an ignored signal would stay
  // ignored (Node ignores SIGPIPE and SIGXFSZ), as libuv's own spawn also resets them.
  struct kernel_sigaction dfl = { 0, 0, 0, 0 };
  for (int sig = 1; sig <= 64; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
  }
  // stdin, stdout and stderr as they are, even when the caller's are close-on-exec (as libuv's spawn does).
  for (int fd = 0; fd < 3; fd++) fcntl(fd, F_SETFD, 0);
  // dup2 clears close-on-exec on the target; the high sources close at exec.
  for (int i = 0; i < a->npipes; i++) {
    if (dup2(a->child_end[i], a->first_fd + i) < 0) goto fail;
  }
  uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(uint64_t));
  execve(a->path, a->argv, a->envp);
fail:;
  int e = errno;
  ssize_t ignored = write(a->err_fd, &e, sizeof(e));
  (void)ignored;
  _exit(127);
}

// Starts `path` the way posix_spawn does (clone with CLONE_VM|CLONE_VFORK: no copy of the Node process, the
// parent waits only until the exec), with all signals blocked in the parent meanwhile so no handler of Node's
// runs on the child's stack. 0, or an errno (the child, if it got that far, is reaped).
static int spawn_child(pid_t* pid_out, const char* path, char** argv, char** envp, const int* child_end, int npipes, int first_fd) {
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) return errno;
  // The child's end above the dup2 targets too, or a target could be it.
  int high = fcntl(ep[1], F_DUPFD_CLOEXEC, first_fd + npipes);
  close(ep[1]);
  if (high < 0) { int e = errno; close(ep[0]); return e; }
  ep[1] = high;
  const size_t stack_size = 64 * 1024;
  char* stack = malloc(stack_size);
  if (stack == NULL) { close(ep[0]); close(ep[1]); return ENOMEM; }
  struct spawn_args a = { path, argv, envp, child_end, npipes, first_fd, ep[1] };
  uint64_t all = ~(uint64_t)0, old;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(uint64_t));
  pid_t pid = clone(spawn_child_main, stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
  int err = pid < 0 ? errno : 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof(uint64_t));
  free(stack);
  close(ep[1]);
  if (err == 0) {
    int child_err;
    ssize_t got;
    do got = read(ep[0], &child_err, sizeof(child_err)); while (got < 0 && errno == EINTR);
    if (got == sizeof(child_err)) {
      err = child_err;
      int status;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    } else {
      *pid_out = pid;
    }
  }
  close(ep[0]);
  return err;
}

// A JavaScript array of strings as a NULL-terminated char* array (each string and the array malloc'ed), or NULL.
static char** string_array(napi_env env, napi_value v) {
  uint32_t n;
  bool is_array;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array || napi_get_array_length(env, v, &n) != napi_ok) return NULL;
  char** out = calloc(n + 1, sizeof(char*));
  if (out == NULL) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, v, i, &item) != napi_ok || (out[i] = string_arg(env, item)) == NULL) {
      for (uint32_t j = 0; j < i; j++) free(out[j]);
      free(out);
      return NULL;
    }
  }
  return out;
}

static void free_array(char** a) {
  if (a == NULL) return;
  for (char** p = a; *p != NULL; p++) free(*p);
  free(a);
}


// spawnPiped(path, argv, env, firstFd, dataPipes) -> [pid, statusReadFd, dataWriteFd..., dataCapacity...], or
// [-errno]. A data pipe's capacity (F_GETPIPE_SZ) is how much the caller can write without blocking.
// The child gets stdin/stdout/stderr as they are, fd `firstFd` = the write end of a status pipe, and fds
// firstFd+1 .. firstFd+dataPipes = the read ends of data pipes; every signal at its default and none blocked
// (Node ignores SIGPIPE, and an ignored signal would stay ignored across exec). The parent's ends are close-on-exec.
static napi_value spawn_piped(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t first_fd, data_pipes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 ||
      napi_get_value_int32(env, argv[3], &first_fd) != napi_ok || napi_get_value_int32(env, argv[4], &data_pipes) != napi_ok ||
      first_fd < 3 || data_pipes < 0 || data_pipes > 64) {
    napi_throw_type_error(env, NULL, "spawnPiped(path, argv, env, firstFd, dataPipes) takes a string, two string arrays, and two integers");
    return NULL;
  }
  char* path = string_arg(env, argv[0]);
  char** args = string_array(env, argv[1]);
  char** envp = string_array(env, argv[2]);
  int npipes = data_pipes + 1;
  int parent_end[65], child_end[65];
  int made = 0, err = 0;
  pid_t pid = -1;
  napi_value out = NULL;
  if (path == NULL || args == NULL || envp == NULL) {
    napi_throw_type_error(env, NULL, "spawnPiped: path, argv and env must be strings");
    goto done;
  }
  for (; made < npipes; made++) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) { err = errno; break; }
    // Pipe 0 (status) is written by the child; the data pipes are read by it.
    int child = made == 0 ? p[1] : p[0];
    parent_end[made] = made == 0 ? p[0] : p[1];
    // Above every dup2 target (firstFd .. firstFd+dataPipes), so no dup2 closes a source another one still needs.
    child_end[made] = fcntl(child, F_DUPFD_CLOEXEC, first_fd + npipes);
    close(child);
    if (child_end[made] < 0) { err = errno; close(parent_end[made]); break; }
  }
  if (err == 0) err = spawn_child(&pid, path, args, envp, child_end, npipes, first_fd);
  for (int i = 0; i < made; i++) close(child_end[i]);
  napi_create_array(env, &out);
  if (err != 0) {
    for (int i = 0; i < made; i++) close(parent_end[i]);
    napi_set_element(env, out, 0, result(env, -err));
  } else {
    napi_set_element(env, out, 0, result(env, (int32_t)pid));
    for (int i = 0; i < npipes; i++) napi_set_element(env, out, (uint32_t)i + 1, result(env, parent_end[i]));
    for (int i = 1; i < npipes; i++) {
      int cap = fcntl(parent_end[i], F_GETPIPE_SZ);
      napi_set_element(env, out, (uint32_t)npipes + (uint32_t)i, result(env, cap < 0 ? 0 : cap));
    }
  }
done:
  free(path);
  free_array(args);
  free_array(envp);
  return out;
}

// waitPid(pid) -> [exitCode, signal] once the child is gone (blocking: call it only for a child that is ending),
// or [-errno, 0].
static napi_value wait_pid(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t pid;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int32(env, argv[0], &pid) != napi_ok) {
    napi_throw_type_error(env, NULL, "waitPid(pid) takes an integer");
    return NULL;
  }
  int status = 0, rc;
  do rc = waitpid((pid_t)pid, &status, 0); while (rc < 0 && errno == EINTR);
  napi_value out;
  napi_create_array(env, &out);
  if (rc < 0) {
    napi_set_element(env, out, 0, result(env, -errno));
    napi_set_element(env, out, 1, result(env, 0));
  } else {
    napi_set_element(env, out, 0, result(env, WIFEXITED(status) ? WEXITSTATUS(status) : 0));
    napi_set_element(env, out, 1, result(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  }
  return out;
}

// getxattr(path, name) -> the value as a string, or -errno. For the runtime's accounting: the mount's user.rx and
// user.ndownload counters without starting getfattr(1) (a fork of the whole Node process and child_process's
// module graph, ~25 ms of a start).
static napi_value get_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, NULL, "getxattr(path, name) takes two strings");
    return NULL;
  }
  char* path = string_arg(env, argv[0]);
  char* name = string_arg(env, argv[1]);
  napi_value out = NULL;
  if (path == NULL || name == NULL) {
    napi_throw_type_error(env, NULL, "getxattr(path, name) takes two strings");
  } else {
    char value[4096];
    ssize_t n = getxattr(path, name, value, sizeof(value));
    if (n < 0) out = result(env, -errno);
    else napi_create_string_utf8(env, value, (size_t)n, &out);
  }
  free(path);
  free(name);
  return out;
}

// willNeed(paths, maxBytes, done(files, bytes)): on the threadpool, opens each file and asks the kernel to read
// its first maxBytes into the page cache (posix_fadvise WILLNEED starts the reads and returns); `done` gets how
// many files were found and the bytes asked for. One call per batch: the daemon's thread does no per-file work.
typedef struct {
  napi_async_work work;
  napi_ref done;
  char** paths;
  uint32_t n;
  int64_t max_bytes;
  uint32_t files;
  int64_t bytes;
} will_need_job;

static void will_need_execute(napi_env env, void* data) {
  (void)env;
  will_need_job* j = data;
  for (uint32_t i = 0; i < j->n; i++) {
    int fd = open(j->paths[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) == 0) {
      int64_t len = st.st_size < j->max_bytes ? st.st_size : j->max_bytes;
      if (len <= 0 || posix_fadvise(fd, 0, (off_t)len, POSIX_FADV_WILLNEED) == 0) {
        j->files++;
        j->bytes += len > 0 ? len : 0;
      }
    }
    close(fd);
  }
}

static void will_need_complete(napi_env env, napi_status status, void* data) {
  will_need_job* j = data;
  napi_value cb, undef, argv[2];
  if (status == napi_ok && napi_get_reference_value(env, j->done, &cb) == napi_ok && cb != NULL) {
    napi_get_undefined(env, &undef);
    napi_create_uint32(env, j->files, &argv[0]);
    napi_create_double(env, (double)j->bytes, &argv[1]);
    napi_call_function(env, undef, cb, 2, argv, NULL);
  }
  napi_delete_reference(env, j->done);
  napi_delete_async_work(env, j->work);
  for (uint32_t i = 0; i < j->n; i++) free(j->paths[i]);
  free(j->paths);
  free(j);
}

static napi_value will_need(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], name;
  uint32_t n = 0;
  double max = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_array_length(env, argv[0], &n) != napi_ok || napi_get_value_double(env, argv[1], &max) != napi_ok) {
    napi_throw_type_error(env, NULL, "willNeed(paths, maxBytes, done) takes an array of strings, a number and a function");
    return NULL;
  }
  will_need_job* j = calloc(1, sizeof(*j));
  if (j == NULL || (j->paths = calloc(n > 0 ? n : 1, sizeof(char*))) == NULL) {
    free(j);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  j->max_bytes = (int64_t)max;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, argv[0], i, &item) != napi_ok) break;
    char* p = string_arg(env, item);
    if (p == NULL) break;
    j->paths[j->n++] = p;
  }
  napi_create_reference(env, argv[2], 1, &j->done);
  napi_create_string_utf8(env, "gridbox-will-need", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, will_need_execute, will_need_complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return NULL;
}

// exitNow(code): _exit(2). For a process that has closed everything it owns (the mount daemon after its
// unmount): Node's own exit then runs its environment teardown, joins its platform threads and runs the C
// library's exit handlers and destructors of every loaded library, libcurl's ~30 among them, while the
// caller of umount(8) waits for the daemon to be gone.
static napi_value exit_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t code = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1) napi_get_value_int32(env, argv[0], &code);
  _exit(code & 0xff);
}

// The openless mount's READs of cached files (fast_read.c).
napi_value fast_read_table(napi_env env, napi_callback_info info);
napi_value fast_read_serve(napi_env env, napi_callback_info info);
napi_value fast_read_set(napi_env env, napi_callback_info info);
napi_value fast_read_drop(napi_env env, napi_callback_info info);
napi_value fast_read_take(napi_env env, napi_callback_info info);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "backingOpen", NULL, backing_open, NULL, NULL, NULL, napi_default, NULL },
    { "backingClose", NULL, backing_close, NULL, NULL, NULL, napi_default, NULL },
    { "mount", NULL, do_mount, NULL, NULL, NULL, napi_default, NULL },
    { "spawnPiped", NULL, spawn_piped, NULL, NULL, NULL, napi_default, NULL },
    { "waitPid", NULL, wait_pid, NULL, NULL, NULL, napi_default, NULL },
    { "getxattr", NULL, get_xattr, NULL, NULL, NULL, napi_default, NULL },
    { "willNeed", NULL, will_need, NULL, NULL, NULL, napi_default, NULL },
    { "exitNow", NULL, exit_now, NULL, NULL, NULL, napi_default, NULL },
    { "fastReadTable", NULL, fast_read_table, NULL, NULL, NULL, napi_default, NULL },
    { "fastReadServe", NULL, fast_read_serve, NULL, NULL, NULL, napi_default, NULL },
    { "fastReadSet", NULL, fast_read_set, NULL, NULL, NULL, napi_default, NULL },
    { "fastReadDrop", NULL, fast_read_drop, NULL, NULL, NULL, napi_default, NULL },
    { "fastReadTake", NULL, fast_read_take, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
