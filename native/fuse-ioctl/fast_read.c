// A thread that reads /dev/fuse for an openless mount and answers READs of cached whole files itself, so the
// bytes of a cached read never pass through JavaScript (issue 11: "the data path of a cached read should not run
// through JavaScript at all"), on kernels without FUSE passthrough too and without passthrough's OPEN per open.
// Every other request, and every READ it cannot answer, goes unchanged to the JavaScript session through a
// SOCK_SEQPACKET socket (one request per message, as one read(2) of the device is one request); the session
// writes its replies to the device itself. The filesystem (src/vfs/repository-fs.ts) tells the table which
// nodeids are whole files whose verified content sits in the client cache, and at which path; an object the
// cache no longer holds, or whose size is not the entry's, makes the READ go to JavaScript, which fetches it.
// Which nodes were read is kept for the filesystem to collect (start profiles, the cache's LRU, counters).
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FUSE_READ_OPCODE 15
#define IN_HEADER 40
#define READ_IN 40
// The largest request the session's reader takes in one message (libuv reads 64 KiB); a read-only mount gets
// nothing larger but a SETXATTR with a huge value, which is answered EIO here instead of truncated there.
#define FORWARD_MAX 65536
// INIT grants at most 1 MiB READs (max_pages 256); requests up to that plus headers fit.
#define DEV_BUFFER ((1 << 20) + 8192)

typedef struct {
  uint64_t nodeid; // 0 = empty slot
  char* path;
  uint64_t size;
  int read; // read since the last take
} slot;

typedef struct {
  pthread_mutex_t lock;
  slot* slots;
  size_t cap, used; // cap a power of two, used <= cap / 2
  uint64_t* taken;  // nodeids read since the last take
  size_t ntaken, captaken;
  uint64_t reads, bytes, forwarded;
  int dev, sock;     // the thread's own dup of the device, its end of the socket pair
  int refs;          // the thread and the JavaScript handle
} fast_reader;

static size_t slot_of(const fast_reader* r, uint64_t nodeid) {
  size_t i = (size_t)(nodeid * 0x9E3779B97F4A7C15ull) & (r->cap - 1);
  while (r->slots[i].nodeid != 0 && r->slots[i].nodeid != nodeid) i = (i + 1) & (r->cap - 1);
  return i;
}

static int grow(fast_reader* r) {
  size_t old = r->cap;
  slot* was = r->slots;
  slot* now = calloc(old * 2, sizeof(slot));
  if (now == NULL) return 0;
  r->slots = now;
  r->cap = old * 2;
  for (size_t i = 0; i < old; i++) if (was[i].nodeid != 0) r->slots[slot_of(r, was[i].nodeid)] = was[i];
  free(was);
  return 1;
}

// Linear probing with backward-shift deletion: no tombstones, lookups stay short however long the mount lives.
static void remove_at(fast_reader* r, size_t i) {
  free(r->slots[i].path);
  r->slots[i].nodeid = 0;
  r->used--;
  size_t j = i;
  for (;;) {
    j = (j + 1) & (r->cap - 1);
    if (r->slots[j].nodeid == 0) return;
    size_t home = (size_t)(r->slots[j].nodeid * 0x9E3779B97F4A7C15ull) & (r->cap - 1);
    // Move slot j back to i when its home is not cyclically within (i, j].
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      r->slots[i] = r->slots[j];
      r->slots[j].nodeid = 0;
      i = j;
    }
  }
}

static void release_reader(fast_reader* r) {
  pthread_mutex_lock(&r->lock);
  int left = --r->refs;
  pthread_mutex_unlock(&r->lock);
  if (left > 0) return;
  for (size_t i = 0; i < r->cap; i++) free(r->slots[i].path);
  free(r->slots);
  free(r->taken);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

static void mark_read(fast_reader* r, uint64_t nodeid, size_t bytes) {
  pthread_mutex_lock(&r->lock);
  r->reads++;
  r->bytes += bytes;
  size_t i = slot_of(r, nodeid);
  if (r->slots[i].nodeid == nodeid && !r->slots[i].read) {
    if (r->ntaken == r->captaken) {
      size_t c = r->captaken == 0 ? 256 : r->captaken * 2;
      uint64_t* t = realloc(r->taken, c * sizeof(uint64_t));
      if (t != NULL) { r->taken = t; r->captaken = c; }
    }
    if (r->ntaken < r->captaken) {
      r->taken[r->ntaken++] = nodeid;
      r->slots[i].read = 1;
    }
  }
  pthread_mutex_unlock(&r->lock);
}

static void reply_error(int dev, uint64_t unique, int err) {
  unsigned char out[16];
  uint32_t len = 16;
  int32_t e = -err;
  memcpy(out, &len, 4);
  memcpy(out + 4, &e, 4);
  memcpy(out + 8, &unique, 8);
  (void)!write(dev, out, sizeof out);
}

// A READ of a registered node, answered from its cache file; 0 when it must go to JavaScript instead.
static int serve_read(fast_reader* r, const unsigned char* req, size_t n, unsigned char* out) {
  if (n < IN_HEADER + READ_IN) return 0;
  uint64_t unique, nodeid, fh, offset;
  uint32_t size;
  memcpy(&unique, req + 8, 8);
  memcpy(&nodeid, req + 16, 8);
  memcpy(&fh, req + IN_HEADER, 8);
  memcpy(&offset, req + IN_HEADER + 8, 8);
  memcpy(&size, req + IN_HEADER + 16, 4);
  if (fh != 0 || size > DEV_BUFFER - 16) return 0; // only openless reads: a handle is the session's
  char path[4096];
  uint64_t expect;
  pthread_mutex_lock(&r->lock);
  size_t i = slot_of(r, nodeid);
  int known = r->slots[i].nodeid == nodeid && strlen(r->slots[i].path) < sizeof path;
  if (known) { strcpy(path, r->slots[i].path); expect = r->slots[i].size; }
  pthread_mutex_unlock(&r->lock);
  if (!known) return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0; // evicted: JavaScript fetches it again
  struct stat st;
  if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != expect) { close(fd); return 0; }
  size_t want = offset >= expect ? 0 : (size_t)(expect - offset < size ? expect - offset : size);
  size_t done = 0;
  while (done < want) {
    ssize_t got = pread(fd, out + 16 + done, want - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) { close(fd); return 0; }
    done += (size_t)got;
  }
  close(fd);
  uint32_t len = (uint32_t)(16 + done);
  int32_t err = 0;
  memcpy(out, &len, 4);
  memcpy(out + 4, &err, 4);
  memcpy(out + 8, &unique, 8);
  // ENOENT: the READ was interrupted meanwhile; the kernel no longer wants the answer.
  (void)!write(r->dev, out, len);
  mark_read(r, nodeid, done);
  return 1;
}

static void* reader_main(void* arg) {
  fast_reader* r = arg;
  unsigned char* buf = malloc(DEV_BUFFER);
  unsigned char* out = malloc(DEV_BUFFER);
  while (buf != NULL && out != NULL) {
    struct pollfd p[2] = { { .fd = r->dev, .events = POLLIN }, { .fd = r->sock, .events = 0 } };
    if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; break; }
    if (p[1].revents & (POLLHUP | POLLERR)) break; // the session closed its end
    if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) break;
    if (!(p[0].revents & POLLIN)) continue;
    ssize_t n = read(r->dev, buf, DEV_BUFFER);
    if (n < 0) {
      // EAGAIN: another reader took it; ENOENT: the request was interrupted before we read it.
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      break; // ENODEV: unmounted
    }
    if (n < IN_HEADER) break;
    uint32_t opcode;
    memcpy(&opcode, buf + 4, 4);
    if (opcode == FUSE_READ_OPCODE && serve_read(r, buf, (size_t)n, out)) continue;
    if (n > FORWARD_MAX) {
      uint64_t unique;
      memcpy(&unique, buf + 8, 8);
      reply_error(r->dev, unique, EIO);
      continue;
    }
    pthread_mutex_lock(&r->lock);
    r->forwarded++;
    pthread_mutex_unlock(&r->lock);
    if (send(r->sock, buf, (size_t)n, MSG_NOSIGNAL) < 0) break;
  }
  free(buf);
  free(out);
  // The session sees end of stream and ends as it does on ENODEV.
  close(r->sock);
  close(r->dev);
  release_reader(r);
  return NULL;
}

static fast_reader* reader_arg(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static void finalize_reader(napi_env env, void* data, void* hint) {
  (void)env; (void)hint;
  release_reader(data);
}

// fastReadStart(devFd) -> [forwardFd, handle], or [-errno]. The thread reads a dup of devFd; the caller keeps
// devFd for its replies and reads requests from forwardFd (end of stream once the device is gone).
napi_value fast_read_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  int32_t dev;
  napi_create_array(env, &out);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int32(env, argv[0], &dev) != napi_ok) {
    napi_throw_type_error(env, NULL, "fastReadStart(devFd) takes an integer");
    return NULL;
  }
  int pair[2];
  fast_reader* r = calloc(1, sizeof *r);
  int err = 0;
  if (r == NULL || (r->slots = calloc(1024, sizeof(slot))) == NULL) err = ENOMEM;
  else if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) err = errno;
  else if ((r->dev = fcntl(dev, F_DUPFD_CLOEXEC, 3)) < 0) { err = errno; close(pair[0]); close(pair[1]); }
  if (err != 0) {
    if (r != NULL) free(r->slots);
    free(r);
    napi_create_int32(env, -err, &v);
    napi_set_element(env, out, 0, v);
    return out;
  }
  // Blocking reads on the thread's own descriptor: poll says when, and the session never reads the device.
  int fl = fcntl(r->dev, F_GETFL);
  if (fl >= 0) fcntl(r->dev, F_SETFL, fl & ~O_NONBLOCK);
  r->cap = 1024;
  r->sock = pair[1];
  r->refs = 2;
  pthread_mutex_init(&r->lock, NULL);
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if ((err = pthread_create(&t, &a, reader_main, r)) != 0) {
    pthread_attr_destroy(&a);
    close(pair[0]); close(pair[1]); close(r->dev);
    pthread_mutex_destroy(&r->lock);
    free(r->slots);
    free(r);
    napi_create_int32(env, -err, &v);
    napi_set_element(env, out, 0, v);
    return out;
  }
  pthread_attr_destroy(&a);
  napi_create_int32(env, pair[0], &v);
  napi_set_element(env, out, 0, v);
  napi_create_external(env, r, finalize_reader, NULL, &v);
  napi_set_element(env, out, 1, v);
  return out;
}

// fastReadSet(handle, nodeid, path, size): READs of nodeid are answered from the file at path (size bytes).
napi_value fast_read_set(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  double nodeid, size;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) return NULL;
  fast_reader* r = reader_arg(env, argv[0]);
  if (r == NULL || napi_get_value_double(env, argv[1], &nodeid) != napi_ok || napi_get_value_double(env, argv[3], &size) != napi_ok) return NULL;
  if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &len) != napi_ok || nodeid < 1 || size < 0) return NULL;
  char* path = malloc(len + 1);
  if (path == NULL) return NULL;
  napi_get_value_string_utf8(env, argv[2], path, len + 1, &len);
  pthread_mutex_lock(&r->lock);
  if ((r->used + 1) * 2 > r->cap && !grow(r)) { pthread_mutex_unlock(&r->lock); free(path); return NULL; }
  size_t i = slot_of(r, (uint64_t)nodeid);
  if (r->slots[i].nodeid == 0) { r->used++; r->slots[i].read = 0; } else free(r->slots[i].path);
  r->slots[i].nodeid = (uint64_t)nodeid;
  r->slots[i].path = path;
  r->slots[i].size = (uint64_t)size;
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

// fastReadDrop(handle, nodeid) -> whether the node was read since the last take (the kernel forgot it).
napi_value fast_read_drop(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  double nodeid;
  int was = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 2) {
    fast_reader* r = reader_arg(env, argv[0]);
    if (r != NULL && napi_get_value_double(env, argv[1], &nodeid) == napi_ok && nodeid >= 1) {
      pthread_mutex_lock(&r->lock);
      size_t i = slot_of(r, (uint64_t)nodeid);
      if (r->slots[i].nodeid == (uint64_t)nodeid) { was = r->slots[i].read; remove_at(r, i); }
      pthread_mutex_unlock(&r->lock);
    }
  }
  napi_get_boolean(env, was, &out);
  return out;
}

// fastReadTake(handle) -> [reads, bytes, forwarded, ...nodeids read since the last take].
napi_value fast_read_take(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  napi_create_array(env, &out);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) return out;
  fast_reader* r = reader_arg(env, argv[0]);
  if (r == NULL) return out;
  pthread_mutex_lock(&r->lock);
  size_t n = r->ntaken;
  uint64_t* ids = r->taken;
  double counters[3] = { (double)r->reads, (double)r->bytes, (double)r->forwarded };
  r->taken = NULL;
  r->ntaken = r->captaken = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = slot_of(r, ids[k]);
    if (r->slots[i].nodeid == ids[k]) r->slots[i].read = 0;
  }
  pthread_mutex_unlock(&r->lock);
  for (uint32_t k = 0; k < 3; k++) { napi_create_double(env, counters[k], &v); napi_set_element(env, out, k, v); }
  for (size_t k = 0; k < n; k++) { napi_create_double(env, (double)ids[k], &v); napi_set_element(env, out, (uint32_t)(3 + k), v); }
  free(ids);
  return out;
}
