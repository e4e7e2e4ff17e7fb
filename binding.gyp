{
  "targets": [
    {
      "target_name": "p256",
      "sources": ["native/p256.cc"],
      "cflags_cc": ["-O2", "-Wall", "-Wno-deprecated-declarations"]
    }
  ]
}
