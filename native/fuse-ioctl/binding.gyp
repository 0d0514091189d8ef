{
  "targets": [
    {
      "target_name": "fuse_ioctl",
      "sources": ["fuse_ioctl.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
