{
  "targets": [
    {
      "target_name": "object_fetch",
      "sources": ["object_fetch.c"],
      "cflags": ["-O2", "-Wall"],
      "libraries": ["-ldl"]
    }
  ]
}
