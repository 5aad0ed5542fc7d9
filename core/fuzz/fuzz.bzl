"""tb_fuzz_target: one fuzz target, built three ways (docs/RELIABILITY.md, "Fuzzing").

    tb_fuzz_target(name = "listing_fuzzer", srcs = ["listing_fuzzer.cc"], deps = [...])

in package P makes

  P:listing_fuzzer_lib       the target's LLVMFuzzerTestOneInput (alwayslink);
  P:listing_fuzzer           a libFuzzer binary under --config=fuzz
                             (tools/fuzz.sh), else a replayer of the files and
                             folders named on its command line
                             (//core/fuzz:replay_main), so it builds and runs in
                             the normal build too;
  P:listing_corpus_test      a test of the normal suite that feeds every file of
                             P/corpus/listing (the seed corpus) and of
                             P/regressions/listing (reproducers of fixed
                             findings, if any) to the same entry point.

The dictionary, if any, is P/listing.dict (used by tools/fuzz.sh).
"""

def tb_fuzz_target(name, srcs, deps = [], test_size = "small", **kwargs):
    if not name.endswith("_fuzzer"):
        fail("a fuzz target's name ends with _fuzzer: " + name)
    base = name[:-len("_fuzzer")]
    native.cc_library(
        name = name + "_lib",
        srcs = srcs,
        deps = deps + ["//core/fuzz:fuzz_util"],
        alwayslink = True,
        **kwargs
    )
    native.cc_binary(
        name = name,
        deps = [":" + name + "_lib"] + select({
            "//core/fuzz:libfuzzer": [],
            "//conditions:default": ["//core/fuzz:replay_main"],
        }),
    )
    folders = ["corpus/" + base]
    if native.glob(["regressions/" + base + "/*"]):
        folders.append("regressions/" + base)
    package = native.package_name()
    native.cc_test(
        name = base + "_corpus_test",
        size = test_size,
        srcs = ["//core/fuzz:corpus_test.cc"],
        args = [package + "/" + f for f in folders],
        data = native.glob([f + "/**" for f in folders]),
        deps = [
            ":" + name + "_lib",
            "@system//:gtest",
        ],
    )
