"""Offline stand-in for `@rules_cc//cc:defs.bzl`.

Bazel 4's bundled tools load the C++ rules from `@rules_cc`, a repository Bazel
would otherwise download. Those rules are built into Bazel itself, so this file
simply hands out the native ones under the names the tools ask for.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
objc_import = native.objc_import
objc_library = native.objc_library
