// READs of an openless mount's cached whole files answered in C, on the session's own thread: the session hands
// the raw READ request to fastReadServe before decoding it, and for a node the filesystem registered (a whole
// file whose verified content the client cache holds) the reply is read from the cache file and written to
// /dev/fuse here, so the bytes never enter JavaScript: no Buffer, no copy, no GC, no threadpool hop (issue 11:
// "the data path of a cached read should not run through JavaScript at all"), on kernels without FUSE
// passthrough too and without passthrough's OPEN per open. A cache file that is gone, or whose size is not the
// entry's, is not served: the session answers that READ as before (it fetches and verifies the object again).
// Which nodes were read is kept for the filesystem to collect (start profiles, the cache's LRU, counters).
// Not a thread of its own: one tried first forwarded every other request to the session through a socket,
// and that extra wakeup cost each LOOKUP 30-60 us on this machine kind (+25-50%).
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUSE_READ_OPCODE 15
#define IN_HEADER 40
#define READ_IN 40
// INIT grants at most 1 MiB READs (max_pages 256); the reply buffer holds that plus its header.
#define MAX_READ (1 << 20)

typedef struct {
  uint64_t nodeid; // 0 = empty slot
  char* path;
  uint64_t size;
  int read; // read since the last take
} slot;

// Used from the JavaScript thread only (the session's dispatch and the filesystem), so no lock.
typedef struct {
  slot* slots;
  size_t cap, used; // cap a power of two, used <= cap / 2
  uint64_t* taken;  // nodeids read since the last take
  size_t ntaken, captaken;
  uint64_t reads, bytes;
  unsigned char* out; // reply buffer, allocated on the first READ served
} fast_table;

static size_t home_of(const fast_table* t, uint64_t nodeid) {
  return (size_t)(nodeid * 0x9E3779B97F4A7C15ull) & (t->cap - 1);
}

static size_t slot_of(const fast_table* t, uint64_t nodeid) {
  size_t i = home_of(t, nodeid);
  while (t->slots[i].nodeid != 0 && t->slots[i].nodeid != nodeid) i = (i + 1) & (t->cap - 1);
  return i;
}

static int grow(fast_table* t) {
  size_t old = t->cap;
  slot* was = t->slots;
  slot* now = calloc(old * 2, sizeof(slot));
  if (now == NULL) return 0;
  t->slots = now;
  t->cap = old * 2;
  for (size_t i = 0; i < old; i++) if (was[i].nodeid != 0) t->slots[slot_of(t, was[i].nodeid)] = was[i];
  free(was);
  return 1;
}

// Linear probing with backward-shift deletion: no tombstones, lookups stay short however long the mount lives.
static void remove_at(fast_table* t, size_t i) {
  free(t->slots[i].path);
  t->slots[i].nodeid = 0;
  t->used--;
  size_t j = i;
  for (;;) {
    j = (j + 1) & (t->cap - 1);
    if (t->slots[j].nodeid == 0) return;
    size_t home = home_of(t, t->slots[j].nodeid);
    // Slot j moves back to the hole at i unless its home lies cyclically within (i, j].
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      t->slots[i] = t->slots[j];
      t->slots[j].nodeid = 0;
      i = j;
    }
  }
}

static void mark_read(fast_table* t, size_t i) {
  if (t->slots[i].read) return;
  if (t->ntaken == t->captaken) {
    size_t c = t->captaken == 0 ? 256 : t->captaken * 2;
    uint64_t* n = realloc(t->taken, c * sizeof(uint64_t));
    if (n == NULL) return;
    t->taken = n;
    t->captaken = c;
  }
  t->taken[t->ntaken++] = t->slots[i].nodeid;
  t->slots[i].read = 1;
}

static fast_table* table_arg(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static void finalize_table(napi_env env, void* data, void* hint) {
  (void)env; (void)hint;
  fast_table* t = data;
  for (size_t i = 0; i < t->cap; i++) if (t->slots[i].nodeid != 0) free(t->slots[i].path);
  free(t->slots);
  free(t->taken);
  free(t->out);
  free(t);
}

// fastReadTable() -> a table of nodes whose READs are answered from cache files.
napi_value fast_read_table(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  fast_table* t = calloc(1, sizeof *t);
  if (t == NULL || (t->slots = calloc(1024, sizeof(slot))) == NULL) {
    free(t);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  t->cap = 1024;
  napi_create_external(env, t, finalize_table, NULL, &out);
  return out;
}

// fastReadSet(table, nodeid, path, size): READs of nodeid may be answered from the file at path (size bytes).
napi_value fast_read_set(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  double nodeid, size;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) return NULL;
  fast_table* t = table_arg(env, argv[0]);
  if (t == NULL || napi_get_value_double(env, argv[1], &nodeid) != napi_ok || napi_get_value_double(env, argv[3], &size) != napi_ok) return NULL;
  if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &len) != napi_ok || nodeid < 1 || size < 0) return NULL;
  char* path = malloc(len + 1);
  if (path == NULL) return NULL;
  napi_get_value_string_utf8(env, argv[2], path, len + 1, &len);
  if ((t->used + 1) * 2 > t->cap && !grow(t)) { free(path); return NULL; }
  size_t i = slot_of(t, (uint64_t)nodeid);
  if (t->slots[i].nodeid == 0) { t->used++; t->slots[i].read = 0; } else free(t->slots[i].path);
  t->slots[i].nodeid = (uint64_t)nodeid;
  t->slots[i].path = path;
  t->slots[i].size = (uint64_t)size;
  return NULL;
}

// fastReadDrop(table, nodeid) -> whether the node was read since the last take (the kernel forgot it).
napi_value fast_read_drop(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  double nodeid;
  int was = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 2) {
    fast_table* t = table_arg(env, argv[0]);
    if (t != NULL && napi_get_value_double(env, argv[1], &nodeid) == napi_ok && nodeid >= 1) {
      size_t i = slot_of(t, (uint64_t)nodeid);
      if (t->slots[i].nodeid == (uint64_t)nodeid) { was = t->slots[i].read; remove_at(t, i); }
    }
  }
  napi_get_boolean(env, was, &out);
  return out;
}

// fastReadTake(table) -> [reads answered, bytes, ...nodeids read since the last take].
napi_value fast_read_take(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  napi_create_array(env, &out);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) return out;
  fast_table* t = table_arg(env, argv[0]);
  if (t == NULL) return out;
  napi_create_double(env, (double)t->reads, &v);
  napi_set_element(env, out, 0, v);
  napi_create_double(env, (double)t->bytes, &v);
  napi_set_element(env, out, 1, v);
  for (size_t k = 0; k < t->ntaken; k++) {
    size_t i = slot_of(t, t->taken[k]);
    if (t->slots[i].nodeid == t->taken[k]) t->slots[i].read = 0;
    napi_create_double(env, (double)t->taken[k], &v);
    napi_set_element(env, out, (uint32_t)(2 + k), v);
  }
  t->ntaken = 0;
  return out;
}

// fastReadServe(table, devFd, request) -> true when this READ (a raw FUSE request: header, fuse_read_in) of a
// registered node was answered here; false leaves it to the session (unregistered, a handle's read, no such
// cache file, a size that is not the entry's, an I/O error).
napi_value fast_read_serve(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  int32_t dev;
  void* req = NULL;
  size_t n = 0;
  napi_get_boolean(env, 0, &out);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) return out;
  fast_table* t = table_arg(env, argv[0]);
  if (t == NULL || napi_get_value_int32(env, argv[1], &dev) != napi_ok || napi_get_buffer_info(env, argv[2], &req, &n) != napi_ok) return out;
  if (n < IN_HEADER + READ_IN) return out;
  const unsigned char* r = req;
  uint32_t opcode, size;
  uint64_t unique, nodeid, fh, offset;
  memcpy(&opcode, r + 4, 4);
  memcpy(&unique, r + 8, 8);
  memcpy(&nodeid, r + 16, 8);
  memcpy(&fh, r + IN_HEADER, 8);
  memcpy(&offset, r + IN_HEADER + 8, 8);
  memcpy(&size, r + IN_HEADER + 16, 4);
  // A handle's read is the session's; nodeid 0 is never a node (and would match an empty slot).
  if (opcode != FUSE_READ_OPCODE || fh != 0 || nodeid == 0 || size > MAX_READ) return out;
  size_t i = slot_of(t, nodeid);
  if (t->slots[i].nodeid != nodeid) return out;
  if (t->out == NULL && (t->out = malloc(16 + MAX_READ)) == NULL) return out;
  uint64_t expect = t->slots[i].size;
  int fd = open(t->slots[i].path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out; // evicted: the session fetches it again
  struct stat st;
  size_t want = offset >= expect ? 0 : (size_t)(expect - offset < size ? expect - offset : size);
  size_t done = 0;
  int ok = fstat(fd, &st) == 0 && (uint64_t)st.st_size == expect;
  while (ok && done < want) {
    ssize_t got = pread(fd, t->out + 16 + done, want - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) ok = 0;
    else done += (size_t)got;
  }
  close(fd);
  if (!ok) return out;
  uint32_t len = (uint32_t)(16 + done);
  int32_t err = 0;
  memcpy(t->out, &len, 4);
  memcpy(t->out + 4, &err, 4);
  memcpy(t->out + 8, &unique, 8);
  // A failed write (ENOENT: the READ was interrupted meanwhile; ENODEV: unmounted) needs no answer either way.
  (void)!write(dev, t->out, len);
  t->reads++;
  t->bytes += done;
  mark_read(t, i);
  napi_get_boolean(env, 1, &out);
  return out;
}
