{
  "targets": [
    {
      "target_name": "fuse_ioctl",
      "sources": ["fuse_ioctl.c", "fast_read.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
