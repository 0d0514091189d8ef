// The content-object download of a mount, off Node's thread: one worker thread runs a libcurl multi handle
// (keep-alive connections, any number of transfers at once) and, for every object, hashes the raw body,
// inflates it and writes the plain bytes to a temp file, all in the write callback. Node hands in the URL,
// the proxy and the limits, and gets back one result per transfer: HTTP status, curl's verdict, byte counts,
// the digest and whatever went wrong. Nothing here decides: JavaScript classifies the result (host or proxy
// failure, bad data), runs retries and failover, and commits the temp file only when the digest is right.
//
// Why C: on a 2-core node the daemon's thread spent most of a cold start on Node's HTTP client, a zlib
// stream per object and the cache writes, and FUSE requests queued behind that work (stop 22's note).
// zlib and OpenSSL come from Node itself (its headers, its exported symbols): one copy of each in the process.
// libcurl is opened with dlopen on the worker thread, not linked: loading it and its ~30 libraries takes
// 15-30 ms, which a mount's start would otherwise wait for on Node's thread.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <node_api.h>
#include <openssl/evp.h>
#include <zlib.h>

#define OUT_CHUNK (256 * 1024)
#define HEADER_VALUE 256

// The libcurl functions used, resolved from libcurl.so.4 by the worker thread.
#define CURL_FUNCS(X) X(curl_global_init) X(curl_multi_init) X(curl_multi_add_handle) X(curl_multi_remove_handle) \
  X(curl_multi_perform) X(curl_multi_info_read) X(curl_multi_poll) X(curl_multi_wakeup) X(curl_multi_cleanup) \
  X(curl_easy_init) X(curl_easy_reset) X(curl_easy_setopt) X(curl_easy_getinfo) X(curl_easy_cleanup) \
  X(curl_easy_strerror) X(curl_slist_append) X(curl_slist_free_all)
#define DECLARE(name) static __typeof__(&name) p_##name;
CURL_FUNCS(DECLARE)
#undef DECLARE
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_loaded; // 1 loaded, -1 not available
static char curl_load_error[256];

static void load_curl(void) {
  // GRIDBOX_LIBCURL names another library (tests use a missing one to see the fallback to JavaScript).
  const char *name = getenv("GRIDBOX_LIBCURL");
  void *lib = dlopen(name != NULL && name[0] != 0 ? name : "libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    snprintf(curl_load_error, sizeof curl_load_error, "%s", dlerror());
    curl_loaded = -1;
    return;
  }
#define RESOLVE(name) \
  if ((p_##name = (__typeof__(&name))dlsym(lib, #name)) == NULL) { \
    snprintf(curl_load_error, sizeof curl_load_error, "libcurl.so.4 lacks %s", #name); \
    curl_loaded = -1; \
    return; \
  }
  CURL_FUNCS(RESOLVE)
#undef RESOLVE
  // Plain HTTP only (the JavaScript path serves https and file URLs): no TLS initialisation.
  if (p_curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
    snprintf(curl_load_error, sizeof curl_load_error, "curl_global_init failed");
    curl_loaded = -1;
    return;
  }
  curl_loaded = 1;
}

typedef struct job {
  struct job *next;
  struct job *prev_active, *next_active;
  double id;
  char *url, *proxy, *user_agent, *out_path;
  char **header_lines;
  uint32_t n_headers;
  struct curl_slist *headers;
  int64_t timeout_ms, max_raw, expected, max_out;
  int compressed;
  const EVP_MD *md;
  int digest_len;
  // transfer state
  CURL *easy;
  int fd;
  EVP_MD_CTX *md_ctx;
  z_stream z;
  int z_init, z_ended, z_error;
  char z_msg[128];
  int64_t wire, out, declared;
  int overflow, too_large, timed_out, closed, unavailable;
  int write_errno;
  long status;
  uint64_t last_activity;
  CURLcode code;
  char errbuf[CURL_ERROR_SIZE];
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  char squid_error[HEADER_VALUE], proxy_status[HEADER_VALUE];
} job;

typedef struct fetcher {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;  // wakes a worker that has no multi handle to wake (libcurl missing)
  job *queue_head, *queue_tail;
  int stop, joined, unavailable, hooked;
  CURLM *multi;
  napi_threadsafe_function tsfn;
  job *active;
  CURL *pool[64];
  int pooled;
  unsigned char out_buf[OUT_CHUNK];
} fetcher;

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void copy_header_value(char *dst, const char *v, size_t n) {
  while (n > 0 && (*v == ' ' || *v == '\t')) { v++; n--; }
  while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
  if (n >= HEADER_VALUE) n = HEADER_VALUE - 1;
  memcpy(dst, v, n);
  dst[n] = 0;
}

static int header_is(const char *line, size_t n, const char *name, const char **value, size_t *vn) {
  size_t k = strlen(name);
  if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0) return 0;
  *value = line + k + 1;
  *vn = n - k - 1;
  return 1;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *p) {
  job *j = p;
  size_t n = size * nmemb;
  const char *v;
  size_t vn;
  j->last_activity = now_ms();
  if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
    // A new response (after a 1xx, say): forget the headers of the one before.
    j->squid_error[0] = j->proxy_status[0] = 0;
    j->declared = -1;
  } else if (header_is(line, n, "x-squid-error", &v, &vn)) {
    copy_header_value(j->squid_error, v, vn);
  } else if (header_is(line, n, "proxy-status", &v, &vn)) {
    copy_header_value(j->proxy_status, v, vn);
  } else if (header_is(line, n, "content-length", &v, &vn)) {
    char tmp[32];
    copy_header_value(tmp, v, vn < sizeof tmp - 1 ? vn : sizeof tmp - 1);
    j->declared = strtoll(tmp, NULL, 10);
  }
  return n;
}

static int write_all(job *j, const unsigned char *b, size_t n) {
  while (n > 0) {
    ssize_t w = write(j->fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      j->write_errno = errno;
      return -1;
    }
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

/** Hands plain bytes on, unless they go past the limit (a decompression bomb stops there). */
static int emit(job *j, const unsigned char *b, size_t n) {
  int64_t limit = j->expected >= 0 ? j->expected : j->max_out;
  if (j->overflow) return 0;
  if (j->out + (int64_t)n > limit) { j->overflow = 1; return 0; }
  j->out += (int64_t)n;
  return write_all(j, b, n);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *p) {
  job *j = p;
  fetcher *f = NULL;
  size_t n = size * nmemb;
  j->last_activity = now_ms();
  if (j->wire == 0) {
    p_curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
    // The body of an error answer is not read: the connection is dropped, as the JavaScript path does.
    if (j->status < 200 || j->status > 299) return 0;
    if (j->declared > j->max_raw) { j->too_large = 1; return 0; }
  }
  j->wire += (int64_t)n;
  if (j->wire > j->max_raw) { j->too_large = 1; return 0; }
  EVP_DigestUpdate(j->md_ctx, data, n);
  // Past an overflow or an inflate error the body is still hashed: the hash decides what went wrong.
  if (j->overflow || j->z_error || j->z_ended) return n;
  if (!j->compressed) {
    if (emit(j, (unsigned char *)data, n) < 0) return 0;
    return n;
  }
  p_curl_easy_getinfo(j->easy, CURLINFO_PRIVATE, (char **)&f);
  j->z.next_in = (Bytef *)data;
  j->z.avail_in = (uInt)n;
  while (j->z.avail_in > 0 && !j->overflow) {
    j->z.next_out = f->out_buf;
    j->z.avail_out = OUT_CHUNK;
    int r = inflate(&j->z, Z_NO_FLUSH);
    size_t got = OUT_CHUNK - j->z.avail_out;
    if (got > 0 && emit(j, f->out_buf, got) < 0) return 0;
    if (r == Z_STREAM_END) { j->z_ended = 1; break; }
    if (r != Z_OK && r != Z_BUF_ERROR) {
      j->z_error = 1;
      snprintf(j->z_msg, sizeof j->z_msg, "%s", j->z.msg != NULL ? j->z.msg : "inflate failed");
      break;
    }
    if (r == Z_BUF_ERROR && got == 0) break;
  }
  return n;
}

static void free_job(job *j) {
  if (j == NULL) return;
  free(j->url);
  free(j->proxy);
  free(j->user_agent);
  free(j->out_path);
  for (uint32_t i = 0; i < j->n_headers; i++) free(j->header_lines[i]);
  free(j->header_lines);
  if (j->headers != NULL) p_curl_slist_free_all(j->headers);
  if (j->md_ctx != NULL) EVP_MD_CTX_free(j->md_ctx);
  if (j->z_init) inflateEnd(&j->z);
  if (j->fd >= 0) close(j->fd);
  free(j);
}

static void unlink_active(fetcher *f, job *j) {
  if (j->prev_active != NULL) j->prev_active->next_active = j->next_active;
  else if (f->active == j) f->active = j->next_active;
  if (j->next_active != NULL) j->next_active->prev_active = j->prev_active;
  j->prev_active = j->next_active = NULL;
}

/** Ends a transfer (done, failed, timed out or cancelled) and posts its result to Node's thread. */
static void finish(fetcher *f, job *j, CURLcode code) {
  j->code = code;
  if (j->easy != NULL) {
    long st = 0;
    if (p_curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK && st != 0) j->status = st;
    p_curl_multi_remove_handle(f->multi, j->easy);
    if (f->pooled < (int)(sizeof f->pool / sizeof f->pool[0])) f->pool[f->pooled++] = j->easy;
    else p_curl_easy_cleanup(j->easy);
    j->easy = NULL;
  }
  unlink_active(f, j);
  if (j->fd >= 0) {
    if (close(j->fd) != 0 && j->write_errno == 0) j->write_errno = errno;
    j->fd = -1;
  }
  if (j->md_ctx != NULL) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    if (EVP_MD_flags(j->md) & EVP_MD_FLAG_XOF) { EVP_DigestFinalXOF(j->md_ctx, d, (size_t)j->digest_len); dn = (unsigned)j->digest_len; }
    else EVP_DigestFinal_ex(j->md_ctx, d, &dn);
    for (unsigned i = 0; i < dn; i++) snprintf(j->hex + 2 * i, 3, "%02x", d[i]);
  }
  if (napi_call_threadsafe_function(f->tsfn, j, napi_tsfn_nonblocking) != napi_ok) free_job(j);
}

static void start(fetcher *f, job *j) {
  j->last_activity = now_ms();
  j->fd = open(j->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (j->fd < 0) { j->write_errno = errno; finish(f, j, CURLE_WRITE_ERROR); return; }
  j->md_ctx = EVP_MD_CTX_new();
  if (j->md_ctx == NULL || EVP_DigestInit_ex(j->md_ctx, j->md, NULL) != 1) { j->write_errno = ENOMEM; finish(f, j, CURLE_OUT_OF_MEMORY); return; }
  if (j->compressed) {
    if (inflateInit(&j->z) != Z_OK) { j->write_errno = ENOMEM; finish(f, j, CURLE_OUT_OF_MEMORY); return; }
    j->z_init = 1;
  }
  CURL *e = f->pooled > 0 ? f->pool[--f->pooled] : p_curl_easy_init();
  if (e == NULL) { j->write_errno = ENOMEM; finish(f, j, CURLE_OUT_OF_MEMORY); return; }
  p_curl_easy_reset(e);
  j->easy = e;
  for (uint32_t i = 0; i < j->n_headers; i++) j->headers = p_curl_slist_append(j->headers, j->header_lines[i]);
  p_curl_easy_setopt(e, CURLOPT_URL, j->url);
  // The proxy is exactly the one asked for, as on Node's path: "" is DIRECT whatever http_proxy says, and an
  // empty no-proxy list keeps a site's no_proxy (often 127.0.0.1, localhost) from bypassing CVMFS_HTTP_PROXY.
  p_curl_easy_setopt(e, CURLOPT_PROXY, j->proxy);
  p_curl_easy_setopt(e, CURLOPT_NOPROXY, "");
  p_curl_easy_setopt(e, CURLOPT_USERAGENT, j->user_agent);
  p_curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
  p_curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  p_curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
  p_curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  p_curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  p_curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  p_curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)j->timeout_ms);
  p_curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  p_curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
  p_curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  p_curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
  p_curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
  p_curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)f);
  if (p_curl_multi_add_handle(f->multi, e) != CURLM_OK) { finish(f, j, CURLE_FAILED_INIT); return; }
  j->next_active = f->active;
  if (f->active != NULL) f->active->prev_active = j;
  f->active = j;
}

/** Without libcurl: every job ends at once as unavailable, and JavaScript downloads it instead. */
static void run_unavailable(fetcher *f) {
  pthread_mutex_lock(&f->lock);
  f->unavailable = 1;
  pthread_mutex_unlock(&f->lock);
  napi_call_threadsafe_function(f->tsfn, NULL, napi_tsfn_nonblocking);  // onDone(0, null): loading ended
  pthread_mutex_lock(&f->lock);
  for (;;) {
    job *q = f->queue_head;
    f->queue_head = f->queue_tail = NULL;
    pthread_mutex_unlock(&f->lock);
    for (job *j = q; j != NULL;) { job *n = j->next; j->unavailable = 1; finish(f, j, CURLE_FAILED_INIT); j = n; }
    pthread_mutex_lock(&f->lock);
    if (f->stop) break;
    if (f->queue_head == NULL) pthread_cond_wait(&f->cond, &f->lock);
  }
  pthread_mutex_unlock(&f->lock);
}

static void *run(void *p) {
  fetcher *f = p;
  pthread_once(&curl_once, load_curl);
  CURLM *multi = curl_loaded == 1 ? p_curl_multi_init() : NULL;
  if (multi == NULL) {
    if (curl_loaded == 1) snprintf(curl_load_error, sizeof curl_load_error, "curl_multi_init failed");
    run_unavailable(f);
    return NULL;
  }
  pthread_mutex_lock(&f->lock);
  f->multi = multi;
  pthread_mutex_unlock(&f->lock);
  napi_call_threadsafe_function(f->tsfn, NULL, napi_tsfn_nonblocking);  // onDone(0, null): loading ended
  for (;;) {
    pthread_mutex_lock(&f->lock);
    job *q = f->queue_head;
    f->queue_head = f->queue_tail = NULL;
    int stop = f->stop;
    pthread_mutex_unlock(&f->lock);
    if (stop) {
      for (job *j = q; j != NULL;) { job *n = j->next; j->closed = 1; finish(f, j, CURLE_ABORTED_BY_CALLBACK); j = n; }
      while (f->active != NULL) { f->active->closed = 1; finish(f, f->active, CURLE_ABORTED_BY_CALLBACK); }
      for (int i = 0; i < f->pooled; i++) p_curl_easy_cleanup(f->pool[i]);
      f->pooled = 0;
      pthread_mutex_lock(&f->lock);
      f->multi = NULL;
      pthread_mutex_unlock(&f->lock);
      p_curl_multi_cleanup(multi);
      break;
    }
    for (job *j = q; j != NULL;) { job *n = j->next; j->next = NULL; start(f, j); j = n; }
    int running = 0;
    p_curl_multi_perform(f->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = p_curl_multi_info_read(f->multi, &left)) != NULL) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL *e = m->easy_handle;
      CURLcode c = m->data.result;
      for (job *j = f->active; j != NULL; j = j->next_active) {
        if (j->easy == e) { finish(f, j, c); break; }
      }
    }
    // Inactivity limit: connect, waiting for headers, and every gap between body pieces.
    uint64_t t = now_ms();
    long wait = 1000;
    for (job *j = f->active; j != NULL;) {
      job *n = j->next_active;
      uint64_t due = j->last_activity + (uint64_t)j->timeout_ms;
      if (t >= due) { j->timed_out = 1; finish(f, j, CURLE_OPERATION_TIMEDOUT); }
      else if ((long)(due - t) < wait) wait = (long)(due - t);
      j = n;
    }
    p_curl_multi_poll(f->multi, NULL, 0, (int)(wait < 1 ? 1 : wait), NULL);
  }
  return NULL;
}

// ---- Node side ----

static void set_num(napi_env env, napi_value o, const char *k, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, o, k, x);
}

static void set_str(napi_env env, napi_value o, const char *k, const char *v) {
  napi_value x;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
  napi_set_named_property(env, o, k, x);
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  job *j = data;
  (void)context;
  if (j == NULL) {
    if (env != NULL && cb != NULL) {
      napi_value argv[2], undef;
      napi_create_double(env, 0, &argv[0]);
      napi_get_null(env, &argv[1]);
      napi_get_undefined(env, &undef);
      napi_call_function(env, undef, cb, 2, argv, NULL);
    }
    return;
  }
  if (env != NULL && cb != NULL) {
    napi_value r, id, undef;
    napi_create_object(env, &r);
    set_num(env, r, "curlCode", j->code);
    set_str(env, r, "curlMessage", j->unavailable ? curl_load_error : j->errbuf[0] != 0 ? j->errbuf : p_curl_easy_strerror(j->code));
    set_num(env, r, "status", (double)j->status);
    set_num(env, r, "wireBytes", (double)j->wire);
    set_num(env, r, "outBytes", (double)j->out);
    set_str(env, r, "hex", j->hex);
    set_num(env, r, "timedOut", j->timed_out);
    set_num(env, r, "tooLarge", j->too_large);
    set_num(env, r, "overflow", j->overflow);
    set_num(env, r, "inflateError", j->z_error);
    set_str(env, r, "inflateMessage", j->z_msg);
    set_num(env, r, "inflateEnded", j->compressed ? j->z_ended : 1);
    set_num(env, r, "writeErrno", j->write_errno);
    set_num(env, r, "closed", j->closed);
    set_num(env, r, "unavailable", j->unavailable);
    set_str(env, r, "squidError", j->squid_error);
    set_str(env, r, "proxyStatus", j->proxy_status);
    napi_create_double(env, j->id, &id);
    napi_get_undefined(env, &undef);
    napi_value argv[2] = {id, r};
    napi_call_function(env, undef, cb, 2, argv, NULL);
  }
  free_job(j);
}

static void shutdown_fetcher(fetcher *f) {
  if (f->joined) return;
  pthread_mutex_lock(&f->lock);
  f->stop = 1;
  if (f->multi != NULL) p_curl_multi_wakeup(f->multi);
  pthread_cond_signal(&f->cond);
  pthread_mutex_unlock(&f->lock);
  pthread_join(f->thread, NULL);
  f->joined = 1;
  napi_release_threadsafe_function(f->tsfn, napi_tsfn_release);
}

// At the environment's teardown the thread must be stopped and the completion queue released before Node
// destroys that queue itself: hooks run in reverse order of registration, and ours is added after the queue's.
static void cleanup_hook(void *data) {
  fetcher *f = data;
  f->hooked = 0;
  shutdown_fetcher(f);
}

static void finalize_fetcher(napi_env env, void *data, void *hint) {
  (void)hint;
  fetcher *f = data;
  if (f->hooked) { napi_remove_env_cleanup_hook(env, cleanup_hook, f); f->hooked = 0; }
  shutdown_fetcher(f);
  pthread_mutex_destroy(&f->lock);
  pthread_cond_destroy(&f->cond);
  free(f);
}

static napi_value throw_msg(napi_env env, const char *m) {
  napi_throw_error(env, NULL, m);
  return NULL;
}

static fetcher *get_fetcher(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static char *get_string(napi_env env, napi_value v) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return NULL;
  char *s = malloc(n + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, n + 1, &n);
  return s;
}

static int64_t get_i64(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return (int64_t)d;
}

/**
 * createFetcher(onDone(id, result)): a worker thread that loads libcurl; onDone(0, null) once that ended (then
 * state() tells how), onDone(id, result) for each transfer. The handle is an external.
 */
static napi_value create_fetcher(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name, ext;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_msg(env, "createFetcher(onDone)");
  fetcher *f = calloc(1, sizeof *f);
  if (f == NULL) return throw_msg(env, "out of memory");
  pthread_mutex_init(&f->lock, NULL);
  pthread_cond_init(&f->cond, NULL);
  napi_create_string_utf8(env, "gridbox-object-fetch", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, f, call_js, &f->tsfn) != napi_ok) {
    free(f);
    return throw_msg(env, "cannot create the completion queue");
  }
  // Idle, the fetcher must not keep the process alive; JavaScript refs it while transfers are in flight.
  napi_unref_threadsafe_function(env, f->tsfn);
  if (pthread_create(&f->thread, NULL, run, f) != 0) {
    napi_release_threadsafe_function(f->tsfn, napi_tsfn_abort);
    free(f);
    return throw_msg(env, "cannot start the fetch thread");
  }
  if (napi_add_env_cleanup_hook(env, cleanup_hook, f) == napi_ok) f->hooked = 1;
  napi_create_external(env, f, finalize_fetcher, NULL, &ext);
  return ext;
}

/**
 * fetch(h, id, url, proxy, userAgent, headers[], timeoutMs, maxRawBytes, algorithm, compressed, expectedSize
 * (-1: unknown), maxOutBytes, outPath): queues one transfer; its result comes to onDone with `id`.
 */
static napi_value fetch(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value a[13];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  if (argc < 13) return throw_msg(env, "fetch: 13 arguments expected");
  fetcher *f = get_fetcher(env, a[0]);
  if (f == NULL || f->joined) return throw_msg(env, "fetch: the fetcher is closed");
  job *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_msg(env, "out of memory");
  j->fd = -1;
  j->declared = -1;
  napi_get_value_double(env, a[1], &j->id);
  j->url = get_string(env, a[2]);
  j->proxy = get_string(env, a[3]);
  j->user_agent = get_string(env, a[4]);
  uint32_t nh = 0;
  napi_get_array_length(env, a[5], &nh);
  j->header_lines = calloc(nh > 0 ? nh : 1, sizeof(char *));
  for (uint32_t i = 0; j->header_lines != NULL && i < nh; i++) {
    napi_value h;
    napi_get_element(env, a[5], i, &h);
    char *s = get_string(env, h);
    if (s != NULL) j->header_lines[j->n_headers++] = s;
  }
  j->timeout_ms = get_i64(env, a[6]);
  j->max_raw = get_i64(env, a[7]);
  char *algo = get_string(env, a[8]);
  bool compressed = true;
  napi_get_value_bool(env, a[9], &compressed);
  j->compressed = compressed;
  j->expected = get_i64(env, a[10]);
  j->max_out = get_i64(env, a[11]);
  j->out_path = get_string(env, a[12]);
  j->digest_len = 20;
  if (algo != NULL && strcmp(algo, "sha1") == 0) j->md = EVP_sha1();
  else if (algo != NULL && strcmp(algo, "rmd160") == 0) j->md = EVP_ripemd160();
  else if (algo != NULL && strcmp(algo, "shake128") == 0) j->md = EVP_shake128();
  free(algo);
  if (j->header_lines == NULL || j->md == NULL || j->url == NULL || j->proxy == NULL || j->user_agent == NULL || j->out_path == NULL) {
    free_job(j);
    return throw_msg(env, "fetch: bad arguments or unsupported hash algorithm");
  }
  pthread_mutex_lock(&f->lock);
  // A non-empty queue already has its wake-up on the way, and the worker takes the whole queue at once: a
  // replay that queues dozens of objects in one tick costs one wake-up (a syscall and a thread switch).
  int wake = f->queue_head == NULL;
  if (f->queue_tail != NULL) f->queue_tail->next = j;
  else f->queue_head = j;
  f->queue_tail = j;
  if (wake) {
    if (f->multi != NULL) p_curl_multi_wakeup(f->multi);
    pthread_cond_signal(&f->cond);
  }
  pthread_mutex_unlock(&f->lock);
  return NULL;
}

/** ref(h, bool): whether the fetcher keeps the event loop alive (true while transfers are in flight). */
static napi_value ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  bool on = false;
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  fetcher *f = argc >= 2 ? get_fetcher(env, a[0]) : NULL;
  if (f == NULL || f->joined) return NULL;
  napi_get_value_bool(env, a[1], &on);
  if (on) napi_ref_threadsafe_function(env, f->tsfn);
  else napi_unref_threadsafe_function(env, f->tsfn);
  return NULL;
}

/** state(h): 1 when libcurl is loaded and transfers start at once, 0 while it loads, -1 when it cannot be loaded. */
static napi_value state(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1], r;
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  fetcher *f = argc >= 1 ? get_fetcher(env, a[0]) : NULL;
  int st = -1;
  if (f != NULL && !f->joined) {
    pthread_mutex_lock(&f->lock);
    st = f->multi != NULL ? 1 : f->unavailable ? -1 : 0;
    pthread_mutex_unlock(&f->lock);
  }
  napi_create_int32(env, st, &r);
  return r;
}

/** close(h): cancels what is in flight (each gets a result with closed set) and stops the thread. */
static napi_value close_fetcher(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  fetcher *f = argc >= 1 ? get_fetcher(env, a[0]) : NULL;
  if (f != NULL) shutdown_fetcher(f);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"createFetcher", NULL, create_fetcher, NULL, NULL, NULL, napi_default, NULL},
    {"fetch", NULL, fetch, NULL, NULL, NULL, napi_default, NULL},
    {"ref", NULL, ref, NULL, NULL, NULL, napi_default, NULL},
    {"state", NULL, state, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, close_fetcher, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
