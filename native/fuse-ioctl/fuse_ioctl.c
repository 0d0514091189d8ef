// The system calls gridbox's FUSE server needs and Node cannot make itself: the two /dev/fuse ioctls of FUSE
// passthrough (Linux >= 6.9, include/uapi/linux/fuse.h: register an open file as a backing file and get its
// backing_id for an OPEN reply, drop that registration), and mount(2) of the FUSE connection, which spares
// a daemon the start of mount(8) (a blocking fork and exec, ~25 ms of a mount with a cold page cache).
// Nothing else: the FUSE protocol stays in TypeScript (src/fuse/).
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "backingOpen", NULL, backing_open, NULL, NULL, NULL, napi_default, NULL },
    { "backingClose", NULL, backing_close, NULL, NULL, NULL, napi_default, NULL },
    { "mount", NULL, do_mount, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
